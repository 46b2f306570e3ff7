"""Automation: tenant partitions kept in step with the registry, and the daily syncs."""

import datetime as dt

import dagster as dg

from sync_pipeline.core import config, db
from sync_pipeline.defs.jobs import sync_job
from sync_pipeline.defs.partitions import TENANT_PARTITIONS, tenant_partitions
from sync_pipeline.defs.resources import Database
from sync_pipeline.registry import schedule, tenants

TICK_MINUTES = 5


def quarantine_after() -> int:
    """Consecutive failed syncs after which the schedule skips a tenant."""
    return config.quarantine_after()


def quarantined(database: Database) -> dict[str, str]:
    with database.engine().connect() as conn:
        rows = conn.execute(db.q("runs/quarantined"), {"failures": quarantine_after()})
        return {r.tenant: r.last_error or "" for r in rows}


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a tenant partition for every registered tenant and removes the "
    "partitions of removed tenants (their app data is kept).",
)
def tenant_partitions_sensor(
    context: dg.SensorEvaluationContext, database: Database
) -> dg.SensorResult:
    with database.engine().connect() as conn:
        registered = {t.settings.slug for t in tenants.list_all(conn)}
    known = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS))
    add, remove = sorted(registered - known), sorted(known - registered)
    requests: list = []
    if add:
        requests.append(tenant_partitions.build_add_request(add))
    if remove:
        requests.append(tenant_partitions.build_delete_request(remove))
    if not requests:
        return dg.SensorResult(skip_reason=f"{len(known)} tenant partitions, all in step")
    context.log.info(f"tenant partitions: added {add or 'none'}, removed {remove or 'none'}")
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.schedule(
    cron_schedule=f"*/{TICK_MINUTES} * * * *",
    job=sync_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Each tenant with auto_sync is synced once a day at its sync_time in its own "
    "time zone; quarantined tenants are skipped.",
)
def daily_tenant_syncs(context: dg.ScheduleEvaluationContext, database: Database):
    end = context.scheduled_execution_time
    if end is None:
        end = dt.datetime.now(dt.UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.UTC)
    start = end - dt.timedelta(minutes=TICK_MINUTES)
    with database.engine().connect() as conn:
        registered = [t.settings for t in tenants.list_all(conn)]
    held = quarantined(database)
    partitions = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS))
    requests, skipped, pending = [], [], []
    for due in schedule.due_between(registered, start, end):
        if due.slug in held:
            skipped.append(due.slug)
            continue
        if due.slug not in partitions:  # registered a moment ago: the sensor adds it next
            pending.append(due.slug)
            continue
        requests.append(
            dg.RunRequest(
                run_key=due.run_key,
                partition_key=due.slug,
                tags={"tenant": due.slug, "trigger": "schedule"},
            )
        )
    if skipped:
        context.log.warning(f"quarantined, not synced: {', '.join(skipped)}")
    if pending:
        context.log.warning(f"no partition yet, not synced this tick: {', '.join(pending)}")
    if not requests:
        reason = f"no tenant due between {start:%H:%M} and {end:%H:%M} UTC"
        if skipped:
            reason += f"; quarantined: {', '.join(skipped)}"
        if pending:
            reason += f"; waiting for their partition: {', '.join(pending)}"
        upcoming = [(slug, at) for slug, at in schedule.next_syncs(registered, end, 4)]
        upcoming = [(slug, at) for slug, at in upcoming if slug not in held][:3]
        if upcoming:  # what the operator looks for on a quiet tick: when the next ones run
            reason += "; next: " + ", ".join(f"{s} {at:%Y-%m-%d %H:%M} UTC" for s, at in upcoming)
        return dg.SkipReason(reason)
    return requests
