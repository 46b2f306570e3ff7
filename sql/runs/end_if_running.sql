-- Close a run's row unless it has an outcome already (a committed apply marks it success).
UPDATE sync.runs
SET status = :status, finished_at = now(), error = :error
WHERE tenant = :tenant AND dagster_run_id = :dagster_run_id AND status = 'running'
RETURNING id
