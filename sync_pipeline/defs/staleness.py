"""Staleness (registry/staleness.py): the per-tenant freshness check, and the sensor that
alerts ops, and tells the tenant's admin what to fix, when a tenant has had no complete read
for longer than its stale_after_hours.

The check `graph_users_fresh` sits beside graph_users, advisory (WARN, never blocks). It runs
with the staging checks in every sync and test sync, and on its own from the UI; the sensor
records its evaluation too (without a run), when an episode starts, daily while it lasts and
when it ends, so that a tenant whose syncs stopped altogether still turns red.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from sync_pipeline.core import config
from sync_pipeline.defs.extract import graph_users
from sync_pipeline.defs.resources import Database
from sync_pipeline.registry import staleness, tenants
from sync_pipeline.registry.staleness import Freshness
from sync_pipeline.report import alerts, mail

CHECK_NAME = "graph_users_fresh"
CHECK_KEY = dg.AssetCheckKey(graph_users, CHECK_NAME)
CHECK_DESCRIPTION = (
    "Advisory (WARN, never blocks): the tenant's last complete read of Graph is no older than "
    "its stale_after_hours (default 36); red while it is. Shows the age of the last complete "
    "read and of the last applied sync."
)
TICK_SECONDS = 600


def _hours(delta: dt.timedelta | None) -> float | None:
    return None if delta is None else round(delta.total_seconds() / 3600, 2)


def _fields(f: Freshness) -> dict[str, Any]:
    """What the check says about a tenant, in a run or from the sensor."""
    metadata: dict[str, Any] = {
        "last_complete_read": f.read_text(),
        "last_applied_sync": f.applied_text(),
        "stale_after_hours": f.settings.stale_after_hours,
    }
    # plain floats, so the UI plots them over evaluations
    ages = {
        "last_complete_read_age_hours": _hours(f.read_age),
        "last_applied_sync_age_hours": _hours(f.applied_age),
    }
    metadata |= {name: hours for name, hours in ages.items() if hours is not None}
    description = f.sentence()
    if f.stale:
        if f.last_error:
            metadata["latest_failure"] = f.last_error
            description += f"; the latest sync failed: {f.last_error[:300]}"
        description += (
            f". `sync-pipeline doctor {f.tenant}` checks the sign-in and permissions; fix the "
            f"cause, then `sync-pipeline sync {f.tenant}`."
        )
    return {
        "passed": not f.stale,
        "severity": dg.AssetCheckSeverity.WARN,
        "description": description,
        "metadata": metadata,
    }


def freshness_result(f: Freshness) -> dg.AssetCheckResult:
    """The check's result in a run."""
    return dg.AssetCheckResult(asset_key=graph_users, check_name=CHECK_NAME, **_fields(f))


def freshness_evaluation(f: Freshness) -> dg.AssetCheckEvaluation:
    """The check's evaluation as the sensor records it, for the tenant's partition."""
    return dg.AssetCheckEvaluation(
        asset_key=graph_users, check_name=CHECK_NAME, partition=f.tenant, **_fields(f)
    )


@dataclass
class Tick:
    """What one evaluation found and did."""

    stale: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)  # check recorded, ops alerted if auto_sync
    told: list[str] = field(default_factory=list)  # admins told
    ended: list[str] = field(default_factory=list)  # episodes over: read again in time
    events: list[dg.AssetCheckEvaluation] = field(default_factory=list)

    def summary(self) -> str:
        if not self.stale:
            ended = f"; read again: {', '.join(self.ended)}" if self.ended else ""
            return f"no stale tenant{ended}"
        parts = [f"stale: {', '.join(self.stale)}"]
        parts.append(f"reported now: {', '.join(self.reported) or 'none due'}")
        if self.told:
            parts.append(f"admins told: {', '.join(self.told)}")
        if self.ended:
            parts.append(f"read again: {', '.join(self.ended)}")
        return "; ".join(parts)


def evaluate(database: Database, now: dt.datetime, log: logging.Logger | Any) -> Tick:
    """One pass over every registered tenant as of `now` (the sensor passes the clock's time;
    tests pass theirs). Each alert is claimed in Postgres and sent in the same transaction,
    tenant by tenant: a mail that fails is logged and tried again at the next tick, and one
    tenant's failure holds up no other."""
    tick = Tick()
    with database.engine().connect() as conn:
        registered = [t.settings for t in tenants.list_all(conn)]
        states = staleness.freshness(conn, registered, now)
    ops = config.ops_alert_email()
    for f in states:
        if not f.stale:
            continue
        tick.stale.append(f.tenant)
        try:
            if _alert(database, f, ops, log):
                tick.reported.append(f.tenant)
                tick.events.append(freshness_evaluation(f))
            if f.settings.auto_sync and f.settings.admin_email and _tell_admin(database, f):
                tick.told.append(f.tenant)
        except mail.MailError as exc:
            log.warning(f"tenant {f.tenant}: staleness alert not sent, tried again later: {exc}")
    with database.engine().begin() as conn:
        tick.ended = staleness.clear(conn, tick.stale)
    tick.events += [freshness_evaluation(f) for f in states if f.tenant in tick.ended]
    return tick


def _alert(database: Database, f: Freshness, ops: str | None, log: logging.Logger | Any) -> bool:
    """The episode's alert, when due: ops emailed (tenants with auto_sync; a tenant synced by
    hand only is expected to wait), the check's evaluation recorded."""
    with database.engine().begin() as conn:
        staleness.observe(conn, f)
        number = staleness.claim_alert(conn, f)
        if number is None:
            return False
        if not f.settings.auto_sync:
            log.info(f"{f.sentence()}; auto_sync is off, so ops are not alerted")
        elif ops:
            where = mail.send(alerts.stale_alert(f, ops, number))
            log.warning(f"{f.sentence()}; alert {number} sent to {where}")
        else:
            log.warning(f"{f.sentence()}; OPS_ALERT_EMAIL is not set: alert not emailed")
    return True


def _tell_admin(database: Database, f: Freshness) -> bool:
    """The admin's notice, once per episode."""
    with database.engine().begin() as conn:
        if not staleness.claim_admin(conn, f):
            return False
        mail.send(alerts.stale_notice(f, str(f.settings.admin_email)))
    return True


@dg.sensor(
    minimum_interval_seconds=TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts OPS_ALERT_EMAIL about each tenant with no complete read for longer "
    "than its stale_after_hours (once, then daily while it lasts) and tells its admin what to "
    "fix; records the graph_users_fresh check's evaluation as it goes.",
)
def tenant_staleness_sensor(
    context: dg.SensorEvaluationContext, database: Database
) -> dg.SensorResult:
    tick = evaluate(database, dt.datetime.now(dt.UTC), context.log)
    return dg.SensorResult(asset_events=tick.events, skip_reason=tick.summary())
