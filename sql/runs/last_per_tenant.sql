SELECT DISTINCT ON (tenant) tenant, status, started_at, dry_run
FROM sync.runs
ORDER BY tenant, started_at DESC
