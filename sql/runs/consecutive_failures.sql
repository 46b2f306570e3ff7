-- How many of the tenant's latest real syncs failed in a row (0 when the last one succeeded).
WITH ordered AS (
    SELECT status,
           row_number() OVER (ORDER BY started_at DESC, id DESC) AS n
    FROM sync.runs
    WHERE tenant = :tenant AND NOT dry_run AND status IN ('success', 'failed')
)
SELECT coalesce(min(n) FILTER (WHERE status = 'success') - 1, count(*)) AS failures
FROM ordered
