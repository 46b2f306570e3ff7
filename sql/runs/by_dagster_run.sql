SELECT id, status, started_at, finished_at, counts, error, dry_run
FROM sync.runs
WHERE tenant = :tenant AND dagster_run_id = :dagster_run_id
ORDER BY id DESC
LIMIT 1
