-- The sync.runs row whose diff the diff checks read: this Dagster run's, else (a check run on
-- its own) the tenant's latest run that has a diff.
SELECT r.id
FROM sync.runs r
WHERE r.tenant = :tenant
  AND (r.dagster_run_id = :dagster_run_id
       OR EXISTS (SELECT 1 FROM sync.diffs d WHERE d.tenant = :tenant AND d.run_id = r.id))
ORDER BY r.dagster_run_id IS NOT DISTINCT FROM :dagster_run_id DESC, r.id DESC
LIMIT 1
