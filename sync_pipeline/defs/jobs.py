"""Jobs: `sync` (everything, per tenant) and `test_sync` (everything but the apply)."""

import dagster as dg

from sync_pipeline.defs.extract import TENANT_BUSY
from sync_pipeline.defs.load import app_directory, test_sync_report
from sync_pipeline.load import runmode
from sync_pipeline.registry import runs


@dg.failure_hook(required_resource_keys={"database"})
def record_failure(context: dg.HookContext) -> None:
    """Mark the tenant's sync.runs row failed, with the error, so history tells the story."""
    run = context.instance.get_run_by_id(context.run_id)
    tenant = run.tags.get("dagster/partition") if run else None
    if not tenant:
        return
    error = str(context.op_exception or "failed")[:2000]
    status = "failed"
    metadata = getattr(context.op_exception, "metadata", None) or {}
    code = metadata.get("code")
    if getattr(code, "value", code) == TENANT_BUSY:
        # never started work: not a failure of the tenant's (no quarantine count)
        status = "canceled"
    elif run is not None and run.status == dg.DagsterRunStatus.CANCELING:
        # Asked to stop (Ctrl-C, the UI's Terminate): the step ended on the request, not on
        # an error (a step with a RetryPolicy reports the interrupt as exhausted retries).
        status, error = "canceled", "stopped on request before it finished"
    with context.resources.database.engine().begin() as conn:
        run_id = runs.ensure(
            conn, tenant, context.run_id, dry_run=runmode.is_dry_run(context.job_name)
        )
        runs.finish(conn, run_id, status, error=f"{context.op.name}: {error}")


sync_job = dg.define_asset_job(
    runmode.SYNC_JOB,
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(test_sync_report),
    description="Sync one tenant: read Graph, apply the settings, load the changes into app.*.",
    hooks={record_failure},
)

test_sync_job = dg.define_asset_job(
    runmode.TEST_SYNC_JOB,
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(app_directory),
    description="Dry run: everything up to the diff and a report; app.* is never touched.",
    hooks={record_failure},
)
