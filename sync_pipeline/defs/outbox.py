"""The outbox's Dagster wiring: the `event_deliveries` sensor posts each tenant's events to
its webhook (outbox/delivery.py) and applies the retention; what it did, and every dead
letter, shows as observations of the tenant's `app_directory` partition and in the tick."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from sync_pipeline.defs.resources import Database
from sync_pipeline.outbox import delivery
from sync_pipeline.registry import tenants

TICK_SECONDS = 30
# a tick ends well within Dagster's sensor timeout (60 s); what is left waits for the next
TICK_BUDGET_SECONDS = 40.0
RETENTION_EVERY = dt.timedelta(hours=1)
APP_DIRECTORY = dg.AssetKey("app_directory")


@dataclass
class Tick:
    """What one evaluation did."""

    outcomes: list[delivery.Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    deleted: int | None = None  # None: retention not due this tick
    observations: list[dg.AssetObservation] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        for o in self.outcomes:
            state = "busy" if o.busy else "retrying" if o.failed else "ok"
            text = f"{o.tenant}: {o.delivered} delivered, {o.pending} pending ({state})"
            if o.dead_total:
                text += f", {o.dead_total} dead letter(s) from event {o.first_dead}"
            if o.last_error:
                text += f", last error {o.last_error}"
            parts.append(text)
        parts += self.errors
        if self.deleted is not None:
            parts.append(f"retention deleted {self.deleted} event(s)")
        return "; ".join(parts) or "no tenant has a webhook"


def observation(o: delivery.Outcome) -> dg.AssetObservation:
    """The delivery state of a tenant, on its app_directory partition (the UI's Events)."""
    metadata: dict[str, Any] = {
        "webhook_delivered": o.delivered,
        "webhook_pending": o.pending,
        "webhook_dead_letters": o.dead_total,
        "webhook_retrying": o.failed,
    }
    if o.first_dead is not None:
        metadata["webhook_first_dead_letter"] = int(o.first_dead)
    if o.last_error:
        metadata["webhook_last_error"] = o.last_error
    return dg.AssetObservation(asset_key=APP_DIRECTORY, partition=o.tenant, metadata=metadata)


def evaluate(database: Database, retention_due: bool, log: Any) -> Tick:
    """Deliver for every tenant with a webhook (within the tick's budget), then, when due,
    apply every tenant's retention."""
    tick, started = Tick(), time.monotonic()
    engine = database.engine()
    with engine.connect() as conn:
        registered = [t.settings for t in tenants.list_all(conn)]
    for settings in (s for s in registered if s.webhook_url):
        left = TICK_BUDGET_SECONDS - (time.monotonic() - started)
        if left <= 1:
            break
        try:
            outcome = delivery.deliver(engine, settings, budget_seconds=min(left, 20.0))
        except delivery.WebhookConfigError as exc:
            tick.errors.append(str(exc))
            log.error(str(exc))
            continue
        tick.outcomes.append(outcome)
        if outcome.delivered or outcome.dead or outcome.failed or outcome.dead_total:
            tick.observations.append(observation(outcome))
        if outcome.dead:
            log.error(
                f"tenant {settings.slug}: {outcome.dead} event(s) dead-lettered after "
                f"{delivery.MAX_ATTEMPTS} attempts ({outcome.last_error}); they stay in "
                "sync.event_dead_letters (docs/operations.md#webhook)"
            )
    if retention_due:
        with engine.begin() as conn:
            tick.deleted = sum(delivery.retention(conn, s) for s in registered)
    return tick


@dg.sensor(
    minimum_interval_seconds=TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts each tenant's outbox events to its webhook_url, signed, in order, "
    "retried with backoff and dead-lettered after 10 attempts; records the delivery state on "
    "the tenant's app_directory partition; hourly, deletes events past event_retention_days "
    "(delivered ones only, for tenants with a webhook).",
)
def event_deliveries(context: dg.SensorEvaluationContext, database: Database) -> dg.SensorResult:
    now = dt.datetime.now(dt.UTC)
    last = dt.datetime.fromisoformat(context.cursor) if context.cursor else None
    due = last is None or now - last >= RETENTION_EVERY
    tick = evaluate(database, due, context.log)
    return dg.SensorResult(
        asset_events=tick.observations,
        skip_reason=tick.summary(),
        cursor=now.isoformat() if due else context.cursor,
    )
