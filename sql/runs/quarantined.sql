-- Tenants whose last :failures real (non-dry) syncs all failed: the schedule skips them
-- until a sync succeeds (a successful manual sync lifts the quarantine).
WITH ranked AS (
    SELECT tenant, status, error,
           row_number() OVER (PARTITION BY tenant ORDER BY started_at DESC, id DESC) AS n
    FROM sync.runs
    WHERE NOT dry_run AND status IN ('success', 'failed')
)
SELECT tenant, max(error) FILTER (WHERE n = 1) AS last_error
FROM ranked
WHERE n <= :failures
GROUP BY tenant
HAVING count(*) = :failures AND bool_and(status = 'failed')
