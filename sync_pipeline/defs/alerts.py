"""Alerts: a failed sync emails ops; a tenant entering quarantine (its rule:
`sync_pipeline.registry.quarantine`) has its admin told what to fix, and so does a tenant whose
sign-in was refused or whose app lacks a permission, at its first failure; a daily health
check of every tenant's credential warns before it expires."""

import datetime as dt
import logging
import time

import dagster as dg

from sync_pipeline.core import config
from sync_pipeline.core.settings import SettingsError
from sync_pipeline.defs.jobs import sync_job, test_sync_job
from sync_pipeline.defs.resources import Database
from sync_pipeline.graph import health
from sync_pipeline.load import runmode
from sync_pipeline.registry import health as health_state
from sync_pipeline.registry import quarantine, tenants
from sync_pipeline.report import alerts, mail

log = logging.getLogger(__name__)


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
        in_a_row = quarantine.consecutive_failures(conn, failure.tenant)
        failures = quarantine.entered(conn, failure.tenant)
        try:
            admin = tenants.get(conn, failure.tenant).settings.admin_email
        except tenants.UnknownTenantError:
            admin = None
    if failures is not None:
        context.log.warning(f"tenant {failure.tenant} quarantined after {failures} failures")
        if admin:
            mail.send(alerts.quarantine_notice(failure, admin, failures))
    elif alerts.will_not_heal(failure) and in_a_row == 1 and admin:
        # a refused sign-in or a missing permission: no retry or later sync fixes it
        where = mail.send(alerts.credential_notice(failure, admin))
        context.log.info(f"credential notice for {failure.tenant} sent to {where}")


HEALTH_BATCH = 25  # tenants examined per tick: a sensor tick must end within a minute
HEALTH_BUDGET_SECONDS = 40.0  # and past this, the rest waits for the next tick


def examine_and_alert(
    database: Database,
    now: dt.datetime,
    limit: int = HEALTH_BATCH,
    only: list[str] | None = None,
) -> tuple[int, int]:
    """Examine the tenants due (registry/health.py), record what was found, and send each
    expiry alert (30, 14 and 7 days before, and once expired) once to ops and the tenant's
    admin. Returns (tenants examined, alerts sent)."""
    engine = database.engine()
    with engine.connect() as conn:
        slugs = health_state.due(conn, now, limit, only)
    sent, examined = 0, 0
    ops = config.ops_alert_email()
    started = time.monotonic()
    for slug in slugs:
        if time.monotonic() - started > HEALTH_BUDGET_SECONDS:
            break  # unexamined tenants stay due: the next tick takes them first
        examined += 1
        with engine.connect() as conn:
            try:
                settings = tenants.get(conn, slug).settings
            except (tenants.UnknownTenantError, SettingsError):
                continue
            hidden, refreshed_at = health.facts(conn, slug)
        if settings.fake_tenant:  # the demo's in-process fake: no credential to expire
            findings = [health.Finding("credential", health.OK, "the bundled demo tenant")]
        else:
            try:
                findings = health.examine(
                    settings, hidden_groups=hidden, refreshed_at=refreshed_at, now=now
                )
            except Exception as exc:  # one tenant's surprise never stops the others' checks
                log.exception("tenant %s: the health check failed", slug)
                findings = [
                    health.Finding(
                        "health check",
                        health.FAIL,
                        f"the check itself failed ({type(exc).__name__}); "
                        f"`sync-pipeline doctor {slug}` shows the details",
                    )
                ]
        with engine.begin() as conn:
            health_state.record(conn, slug, now, findings)
            for finding in findings:
                days = health_state.threshold(finding, now)
                if days is None or not health_state.alert_once(conn, slug, finding, days):
                    continue
                what = "client secret" if finding.credential == "client_secret" else finding.check
                for to in (ops, settings.admin_email):
                    if to:
                        mail.send(alerts.expiry_notice(slug, what, finding.detail, days, to))
                        sent += 1
    return examined, sent


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Examines each tenant's credential and permissions about once a day "
    "(`sync-pipeline doctor`, without reading the directory) and emails ops and the tenant's "
    "admin 30, 14 and 7 days before its secret or certificate expires.",
)
def credential_health(context: dg.SensorEvaluationContext, database: Database) -> dg.SkipReason:
    examined, sent = examine_and_alert(database, dt.datetime.now(dt.UTC))
    return dg.SkipReason(f"examined {examined} tenant(s); {sent} expiry alert(s) sent")
