"""Automation: tenant partitions kept in step with the registry, and the daily syncs."""

import datetime as dt

import dagster as dg

from sync_pipeline.defs.jobs import sync_job
from sync_pipeline.defs.partitions import TENANT_PARTITIONS, tenant_partitions
from sync_pipeline.defs.resources import Database
from sync_pipeline.registry import quarantine, schedule, tenants

TICK_MINUTES = 5


def quarantined(database: Database) -> dict[str, str]:
    """The tenants the schedule skips (`sync_pipeline.registry.quarantine`), with their last
    error."""
    with database.engine().connect() as conn:
        return quarantine.quarantined(conn)


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
def daily_tenant_syncs(
    context: dg.ScheduleEvaluationContext, database: Database
) -> dg.SkipReason | list[dg.RunRequest]:
    end = context.scheduled_execution_time
    if end is None:
        end = dt.datetime.now(dt.UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.UTC)
    start = end - dt.timedelta(minutes=TICK_MINUTES)
    with database.engine().connect() as conn:
        registered = [t.settings for t in tenants.list_all(conn)]
        held = quarantine.quarantined(conn)
    tick = schedule.plan_tick(
        registered,
        start,
        end,
        quarantined=held,
        ready=context.instance.get_dynamic_partitions(TENANT_PARTITIONS),
    )
    if tick.quarantined:
        context.log.warning(f"quarantined, not synced: {', '.join(tick.quarantined)}")
    if tick.pending:
        context.log.warning(f"no partition yet, not synced this tick: {', '.join(tick.pending)}")
    if not tick.requests:
        return dg.SkipReason(tick.skip_reason())
    return [
        dg.RunRequest(
            run_key=due.run_key,
            partition_key=due.slug,
            tags={"tenant": due.slug, "trigger": "schedule"},
        )
        for due in tick.requests
    ]
