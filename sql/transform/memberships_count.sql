-- The snapshot's memberships, counted (the full path).
SELECT count(*) FROM sync.snapshot_memberships WHERE tenant = :tenant
