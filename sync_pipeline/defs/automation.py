"""Automation: tenant partitions kept in step with the registry, and the tenants' scheduled
syncs (daily, the periodic full read, intraday intervals: registry/schedule.py)."""

import datetime as dt

import dagster as dg

from sync_pipeline.core.settings_model import SCHEDULE_TICK_MINUTES
from sync_pipeline.defs.extract import FULL_READ_TAG
from sync_pipeline.defs.jobs import sync_job
from sync_pipeline.defs.partitions import TENANT_PARTITIONS, tenant_partitions
from sync_pipeline.defs.resources import Database
from sync_pipeline.registry import fullreads, quarantine, runlimits, schedule, tenants

TICK_MINUTES = SCHEDULE_TICK_MINUTES  # a sync_interval is a whole number of ticks


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


def run_request(due: schedule.DueSync) -> dg.RunRequest:
    """The run of one due sync: its key and its `sync_pipeline/sync_kind` tag say which kind
    it is; a full one carries the tag the extraction reads to ignore the delta links."""
    tags = {"tenant": due.slug, "trigger": "schedule", schedule.SYNC_KIND_TAG: due.kind}
    if due.full_read:
        tags[FULL_READ_TAG] = "true"
    return dg.RunRequest(run_key=due.run_key, partition_key=due.slug, tags=tags)


# The name is the one the daily schedule always had: a deployment's stored schedule state
# (an operator's stop in the UI, the tick history) stays with it.
@dg.schedule(
    cron_schedule=f"*/{TICK_MINUTES} * * * *",
    job=sync_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Each tenant with auto_sync is synced once a day at its sync_time in its own "
    "time zone (a full read every full_read_every_days), and every sync_interval minutes "
    "when set; a tenant with a run in progress is skipped, quarantined tenants too.",
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
        last_full = fullreads.last_full_reads(conn)
    tick = schedule.plan_tick(
        registered,
        start,
        end,
        quarantined=held,
        ready=context.instance.get_dynamic_partitions(TENANT_PARTITIONS),
        busy=runlimits.busy_tenants(context.instance),
        last_full=last_full,
    )
    if tick.quarantined:
        context.log.warning(f"quarantined, not synced: {', '.join(tick.quarantined)}")
    if tick.pending:
        context.log.warning(f"no partition yet, not synced this tick: {', '.join(tick.pending)}")
    if tick.busy:
        context.log.info(
            "a run in progress, not synced this tick: "
            + ", ".join(f"{slug} ({why})" for slug, why in tick.busy.items())
        )
    if not tick.requests:
        return dg.SkipReason(tick.skip_reason())
    context.log.info("requested: " + ", ".join(f"{due.slug} ({due.kind})" for due in tick.requests))
    return [run_request(due) for due in tick.requests]
