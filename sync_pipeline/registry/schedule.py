"""When each tenant's daily sync is due, in the tenant's own time zone. No Dagster imports.

One Dagster schedule ticks every few minutes and asks this module which tenants fall due in
the window since the previous tick. A tenant's slot is its `sync_time` on a local calendar
day; the run key is the tenant and that local day, so a day's sync is requested once even if
ticks overlap, repeat, or a DST change folds the clock back over the slot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sync_pipeline.core.settings import TenantSettings


@dataclass(frozen=True)
class DueSync:
    slug: str
    local_day: dt.date
    due_at: dt.datetime  # aware, in the tenant's zone

    @property
    def run_key(self) -> str:
        return f"daily:{self.slug}:{self.local_day.isoformat()}"


def slot(settings: TenantSettings, day: dt.date) -> dt.datetime:
    """The tenant's sync slot on a local day, as an aware datetime.

    A slot inside a spring-forward gap does not exist on the wall clock; zoneinfo maps it to
    the instant an hour later, so the sync still runs that day, once.
    """
    zone = ZoneInfo(settings.timezone)
    return dt.datetime.combine(day, settings.effective_sync_time, tzinfo=zone)


def due_between(
    tenants: Iterable[TenantSettings], start: dt.datetime, end: dt.datetime
) -> list[DueSync]:
    """Tenants with auto_sync whose slot falls in (start, end]; start and end are aware."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    due = []
    for settings in tenants:
        if not settings.auto_sync:
            continue
        zone = ZoneInfo(settings.timezone)
        first = start.astimezone(zone).date() - dt.timedelta(days=1)
        last = end.astimezone(zone).date()
        day = first
        while day <= last:
            at = slot(settings, day)
            if start < at <= end:
                due.append(DueSync(settings.slug, day, at))
            day += dt.timedelta(days=1)
    return sorted(due, key=lambda d: (d.due_at, d.slug))


def next_slot(settings: TenantSettings, after: dt.datetime) -> dt.datetime:
    """The tenant's next slot strictly after `after` (for `tenant list` and the UI)."""
    zone = ZoneInfo(settings.timezone)
    day = after.astimezone(zone).date()
    while True:
        at = slot(settings, day)
        if at > after:
            return at
        day += dt.timedelta(days=1)


def next_syncs(
    tenants: Iterable[TenantSettings], after: dt.datetime, limit: int = 3
) -> list[tuple[str, dt.datetime]]:
    """The soonest daily syncs after `after` (slug, slot in UTC), for the tick's skip reason."""
    slots = [(next_slot(s, after).astimezone(dt.UTC), s.slug) for s in tenants if s.auto_sync]
    return [(slug, at) for at, slug in sorted(slots)[:limit]]


@dataclass(frozen=True)
class Tick:
    """What one tick of the daily schedule does: the syncs it requests, and the due tenants it
    leaves out (quarantined ones, and ones whose partition the sensor has not added yet)."""

    start: dt.datetime
    end: dt.datetime
    requests: list[DueSync]
    quarantined: list[str]
    pending: list[str]
    tenants: list[TenantSettings]
    held: frozenset[str]

    def skip_reason(self) -> str:
        """Why the tick requests nothing, with what the operator looks for on a quiet tick:
        when the next syncs run."""
        reason = f"no tenant due between {self.start:%H:%M} and {self.end:%H:%M} UTC"
        if self.quarantined:
            reason += f"; quarantined: {', '.join(self.quarantined)}"
        if self.pending:
            reason += f"; waiting for their partition: {', '.join(self.pending)}"
        upcoming = [(s, at) for s, at in next_syncs(self.tenants, self.end, 4)]
        upcoming = [(s, at) for s, at in upcoming if s not in self.held][:3]
        if upcoming:
            reason += "; next: " + ", ".join(f"{s} {at:%Y-%m-%d %H:%M} UTC" for s, at in upcoming)
        return reason


def plan_tick(
    tenants: Iterable[TenantSettings],
    start: dt.datetime,
    end: dt.datetime,
    *,
    quarantined: Iterable[str],
    ready: Iterable[str],
) -> Tick:
    """The tick for (start, end]: each tenant due then is synced, unless it is quarantined
    (`registry.quarantine`: skipped until a sync succeeds) or not `ready` (registered a moment
    ago: its partition comes with the next sensor tick, and its sync with a later one)."""
    registered = list(tenants)
    held, known = frozenset(quarantined), frozenset(ready)
    requests: list[DueSync] = []
    skipped: list[str] = []
    pending: list[str] = []
    for due in due_between(registered, start, end):
        if due.slug in held:
            skipped.append(due.slug)
        elif due.slug not in known:
            pending.append(due.slug)
        else:
            requests.append(due)
    return Tick(start, end, requests, skipped, pending, registered, held)
