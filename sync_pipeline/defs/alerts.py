"""Alerts: a failed sync emails ops; a tenant entering quarantine (its rule:
`sync_pipeline.registry.quarantine`) has its admin told what to fix."""

import dagster as dg

from sync_pipeline.core import config
from sync_pipeline.defs.jobs import sync_job, test_sync_job
from sync_pipeline.defs.resources import Database
from sync_pipeline.load import runmode
from sync_pipeline.registry import quarantine, tenants
from sync_pipeline.report import alerts, mail


def describe_failure(context: dg.RunFailureSensorContext) -> alerts.FailedSync:
    run = context.dagster_run
    step, message, code, request_id = "run", context.failure_event.message or "", None, None
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        step = event.step_key or step
        if data.error is not None:
            message = data.error.message.strip()
        meta = data.user_failure_data.metadata if data.user_failure_data else {}
        code = getattr(meta.get("code"), "value", None) or code
        request_id = getattr(meta.get("request_id"), "value", None) or request_id
        break
    return alerts.FailedSync(
        tenant=run.tags.get("dagster/partition") or run.tags.get("tenant") or "?",
        job=run.job_name,
        run_id=run.run_id,
        step=step,
        message=message,
        code=code,
        request_id=request_id or None,
    )


@dg.run_failure_sensor(
    monitored_jobs=[sync_job, test_sync_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Emails OPS_ALERT_EMAIL about each failed sync (tenant, step, error code, "
    "request-id, link); tells a tenant's admin when repeated failures pause its syncs.",
)
def sync_failure_alerts(context: dg.RunFailureSensorContext, database: Database) -> None:
    failure = describe_failure(context)
    ops = config.ops_alert_email()
    if ops:
        where = mail.send(alerts.ops_alert(failure, ops))
        context.log.info(f"alert for {failure.tenant} sent to {where}")
    else:
        context.log.warning("OPS_ALERT_EMAIL is not set: failure alert not emailed")
    if not runmode.counts_toward_quarantine(failure.job) or failure.tenant == "?":
        return
    with database.engine().connect() as conn:
        failures = quarantine.entered(conn, failure.tenant)
        try:
            admin = tenants.get(conn, failure.tenant).settings.admin_email
        except tenants.UnknownTenantError:
            admin = None
    if failures is not None:
        context.log.warning(f"tenant {failure.tenant} quarantined after {failures} failures")
        if admin:
            mail.send(alerts.quarantine_notice(failure, admin, failures))
