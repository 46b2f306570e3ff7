-- The tenant's runs still marked running whose process is gone (no liveness lock held): they
-- never finished, so they never committed an apply (the apply marks its run in the same
-- transaction). Marked failed with the reason; returns what it marked.
UPDATE sync.runs AS r
SET status = 'failed', finished_at = now(), error = :reason
WHERE r.tenant = :tenant
  AND r.status = 'running'
  AND r.dagster_run_id IS DISTINCT FROM :own
  AND NOT EXISTS (
    SELECT 1
    FROM pg_locks
    WHERE locktype = 'advisory' AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND objid::bigint = (hashtext('sync-pipeline:run:' || r.dagster_run_id)::bigint & 4294967295)
  )
RETURNING r.id, r.dagster_run_id
