-- Episodes that are over: the tenant was read again in time (or is no longer registered).
-- Returns the tenants whose episode ended.
DELETE FROM sync.stale_tenants
WHERE NOT (tenant = ANY(CAST(:stale AS text[])))
RETURNING tenant
