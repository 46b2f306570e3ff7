-- The tenant's latest runs that did not succeed (failed, canceled, or still running), newest
-- first: `history` lists them under the changes.
SELECT id, dry_run, status, started_at, finished_at, error
FROM sync.runs
WHERE tenant = :tenant AND status <> 'success'
ORDER BY started_at DESC, id DESC
LIMIT :limit
