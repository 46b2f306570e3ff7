-- Imported users now (the snapshot) against the last successful sync that applied (not a test
-- sync): its recorded `users_active` count when the load records one, else the tenant's active
-- synced app users, which is what that sync left behind. No such sync: no baseline (NULL).
WITH last_sync AS (
    SELECT r.id, r.finished_at, r.counts
    FROM sync.runs r
    WHERE r.tenant = :tenant AND NOT r.dry_run AND r.status = 'success'
    ORDER BY r.finished_at DESC NULLS LAST, r.id DESC
    LIMIT 1
)
SELECT
    (SELECT count(*) FROM sync.snapshot_users WHERE tenant = :tenant AND included) AS imported,
    l.id AS baseline_run_id,
    l.finished_at AS baseline_at,
    CASE WHEN l.id IS NOT NULL THEN coalesce(
        CAST(l.counts ->> 'users_active' AS bigint),
        (SELECT count(*) FROM app.users u
          WHERE u.tenant = :tenant AND u.is_active AND u.source = 'm365'))
    END AS baseline
FROM (SELECT 1) one
LEFT JOIN last_sync l ON true
