-- One row per sync or test sync, keyed by the Dagster run: every step of a run may call this.
INSERT INTO sync.runs (tenant, dagster_run_id, dry_run, status)
VALUES (:tenant, :dagster_run_id, :dry_run, 'running')
ON CONFLICT (tenant, dagster_run_id, dry_run) DO UPDATE SET tenant = excluded.tenant
RETURNING id
