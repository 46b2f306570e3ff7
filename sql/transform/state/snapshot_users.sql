-- The tenant's snapshot users now.
SELECT count(*) FROM sync.snapshot_users WHERE tenant = :tenant
