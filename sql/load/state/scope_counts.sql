-- The users the incremental diff would look at, and the tenant's snapshot users (its share).
SELECT
    (SELECT count(*) FROM sp_scope_u) AS considered,
    (SELECT count(*) FROM sync.snapshot_users WHERE tenant = :tenant) AS total
