"""Graph change notifications as the trigger, delta as the truth: a sensor that keeps each
tenant's subscriptions (sync_pipeline/notifications/upkeep.py) and one that requests an
incremental sync for the tenants the receiver marked dirty, debounced.

A notification carries nothing the sync trusts: the run is the ordinary `sync` job, whose
delta read decides what changed. So a lost notification only delays a change until the
next sync (the schedule), and a duplicated or forged one (the receiver rejects those whose
clientState is wrong) at worst causes one extra sync.
"""

import datetime as dt

import dagster as dg

from sync_pipeline.core.settings import SettingsError, TenantSettings
from sync_pipeline.defs.jobs import sync_job
from sync_pipeline.defs.partitions import TENANT_PARTITIONS
from sync_pipeline.defs.resources import Database
from sync_pipeline.graph import GraphClient
from sync_pipeline.notifications import state, upkeep
from sync_pipeline.registry import demo, quarantine, runlimits, tenants

TRIGGER = "notification"


def graph_client(settings: TenantSettings) -> GraphClient:
    # one attempt per connection: a tenant whose host does not answer must not hold the tick
    return GraphClient(demo.serving(settings), connect_retries=0)


def keep_subscriptions(
    database: Database, now: dt.datetime, client_factory: upkeep.ClientFactory = graph_client
) -> upkeep.Upkeep:
    engine = database.engine()
    with engine.connect() as conn:
        registered = [t.settings for t in tenants.list_all(conn)]
    return upkeep.keep_all(engine, registered, client_factory, now)


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the Graph change-notification subscriptions (users, groups) of every "
    "tenant with change_notifications: creates them, renews them 3 days before they expire, "
    "recreates them after Graph removed them, deletes them when turned off.",
)
def notification_subscriptions(
    context: dg.SensorEvaluationContext, database: Database
) -> dg.SkipReason:
    done = keep_subscriptions(database, dt.datetime.now(dt.UTC))
    for slug, why in done.failed.items():
        context.log.warning(f"subscriptions of {slug} not kept: {why}")
    return dg.SkipReason(done.summary())


def notification_runs(
    context: dg.SensorEvaluationContext, database: Database, now: dt.datetime
) -> dg.SensorResult:
    """The sync runs due for the tenants marked dirty whose first notification is at least
    their notification_debounce_seconds old (state.Dirty.due: a change waits at most the
    debounce, and the window's notifications become one sync); each mark a run is requested
    for is cleared (a notification that came meanwhile keeps it). A tenant with a run queued
    or going waits: its mark stays for the tick after that run, so a change it may have
    missed still gets a sync, and never a second run at once."""
    engine = database.engine()
    ready = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS))
    with engine.connect() as conn:
        marks = state.dirty(conn)
        held = quarantine.quarantined(conn) if marks else {}
    requests: list[dg.RunRequest] = []
    waiting: list[str] = []
    for mark in marks:
        with engine.connect() as conn:
            try:
                settings: TenantSettings | None = tenants.get(conn, mark.tenant).settings
            except (tenants.UnknownTenantError, SettingsError):
                settings = None
        if settings is None or mark.tenant in held:
            with engine.begin() as conn:
                state.consume(conn, mark)  # removed or quarantined: the schedule decides
            continue
        debounce = dt.timedelta(seconds=settings.notification_debounce_seconds)
        if not mark.due(debounce, now) or mark.tenant not in ready:
            waiting.append(mark.tenant)
            continue
        busy = runlimits.run_in_progress(context.instance, mark.tenant)
        if busy is not None:
            waiting.append(mark.tenant)
            continue
        with engine.begin() as conn:
            if not state.consume(conn, mark):
                waiting.append(mark.tenant)  # a notification just came: debounce again
                continue
        requests.append(
            dg.RunRequest(
                run_key=f"{TRIGGER}:{mark.tenant}:{mark.last_at.isoformat()}",
                partition_key=mark.tenant,
                tags={
                    "tenant": mark.tenant,
                    "trigger": TRIGGER,
                    "notifications": str(mark.notifications),
                },
            )
        )
    if requests:
        context.log.info(
            f"notification syncs: {', '.join(r.partition_key or '' for r in requests)}"
        )
        return dg.SensorResult(run_requests=requests)
    reason = f"waiting: {', '.join(waiting)}" if waiting else "no tenant marked by a notification"
    return dg.SensorResult(skip_reason=reason)


@dg.sensor(
    job=sync_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests an incremental sync for each tenant a Graph change notification "
    "marked, once its first notification is notification_debounce_seconds old (the window's "
    "notifications become one sync), never while the tenant has a run queued or going.",
)
def notification_syncs(context: dg.SensorEvaluationContext, database: Database) -> dg.SensorResult:
    return notification_runs(context, database, dt.datetime.now(dt.UTC))
