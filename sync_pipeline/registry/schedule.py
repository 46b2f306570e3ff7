"""When each tenant's syncs are due, in the tenant's own time zone. No Dagster imports.

One Dagster schedule ticks every few minutes and asks this module which tenants fall due in
the window since the previous tick, and as what:

- `daily`: the tenant's `sync_time` on a local calendar day; the run key is the tenant and
  that local day, so a day's sync is requested once even if a tick is retried, or a DST
  change folds the clock back over the slot;
- `full`: the daily sync of a day a full read is due (registry/intervals.py): it re-reads
  everything instead of the deltas; same key, `full:` instead of `daily:`;
- `interval`: a `sync_interval` slot (registry/intervals.py); keyed by its UTC minute.

A tenant gets one request a tick at most (full, else daily, else interval), and none while
it has a run queued or going (`busy`): the run in progress reads the same changes, so the
due sync is skipped, not queued behind it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.registry import intervals

# The run tag naming which kind of scheduled sync a run is (DAILY, FULL or INTERVAL).
SYNC_KIND_TAG = "sync_pipeline/sync_kind"
DAILY, FULL, INTERVAL = "daily", "full", "interval"


@dataclass(frozen=True)
class DueSync:
    slug: str
    local_day: dt.date
    due_at: dt.datetime  # aware, in the tenant's zone
    kind: str = DAILY

    @property
    def run_key(self) -> str:
        if self.kind == INTERVAL:
            return f"{INTERVAL}:{self.slug}:{self.due_at.astimezone(dt.UTC):%Y-%m-%dT%H:%MZ}"
        return f"{self.kind}:{self.slug}:{self.local_day.isoformat()}"

    @property
    def full_read(self) -> bool:
        return self.kind == FULL


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


def interval_between(
    tenants: Iterable[TenantSettings], start: dt.datetime, end: dt.datetime
) -> list[DueSync]:
    """Tenants with auto_sync and a sync_interval whose interval slot falls in (start, end]."""
    due = []
    for settings in tenants:
        at = intervals.interval_slot_between(settings, start, end)
        if at is not None:
            local = at.astimezone(ZoneInfo(settings.timezone))
            due.append(DueSync(settings.slug, local.date(), local, INTERVAL))
    return sorted(due, key=lambda d: (d.due_at, d.slug))


def next_sync(settings: TenantSettings, after: dt.datetime) -> dt.datetime:
    """The tenant's next scheduled sync of any kind strictly after `after`."""
    at = next_slot(settings, after)
    interval = intervals.next_interval_slot(settings, after)
    return min(at, interval) if interval is not None else at


def next_syncs(
    tenants: Iterable[TenantSettings], after: dt.datetime, limit: int = 3
) -> list[tuple[str, dt.datetime]]:
    """The soonest scheduled syncs after `after` (slug, UTC), for the tick's skip reason."""
    slots = [(next_sync(s, after).astimezone(dt.UTC), s.slug) for s in tenants if s.auto_sync]
    return [(slug, at) for at, slug in sorted(slots)[:limit]]


@dataclass(frozen=True)
class Tick:
    """What one tick of the schedule does: the syncs it requests, and the due tenants it
    leaves out (quarantined ones, ones whose partition the sensor has not added yet, and ones
    with a run in progress)."""

    start: dt.datetime
    end: dt.datetime
    requests: list[DueSync]
    quarantined: list[str]
    pending: list[str]
    tenants: list[TenantSettings]
    held: frozenset[str]
    busy: dict[str, str] = field(default_factory=dict)  # slug -> its run in progress

    def skip_reason(self) -> str:
        """Why the tick requests nothing, with what the operator looks for on a quiet tick:
        when the next syncs run."""
        reason = f"no tenant due between {self.start:%H:%M} and {self.end:%H:%M} UTC"
        if self.busy:
            reason += "; skipped while a run is in progress: " + ", ".join(
                f"{slug} ({run})" for slug, run in self.busy.items()
            )
        if self.quarantined:
            reason += f"; quarantined: {', '.join(self.quarantined)}"
        if self.pending:
            reason += f"; waiting for their partition: {', '.join(self.pending)}"
        upcoming = [(s, at) for s, at in next_syncs(self.tenants, self.end, 4)]
        upcoming = [(s, at) for s, at in upcoming if s not in self.held][:3]
        if upcoming:
            reason += "; next: " + ", ".join(f"{s} {at:%Y-%m-%d %H:%M} UTC" for s, at in upcoming)
        return reason


def due_in_tick(
    tenants: list[TenantSettings],
    start: dt.datetime,
    end: dt.datetime,
    last_full: Mapping[str, dt.datetime],
) -> list[DueSync]:
    """Every sync due in (start, end], one per tenant: its daily slot (a full read when one
    is due) wins over an interval slot in the same tick."""
    by_slug = {s.slug: s for s in tenants}
    chosen: dict[str, DueSync] = {}
    for due in due_between(tenants, start, end):
        settings = by_slug[due.slug]
        if intervals.full_read_due(settings, due.due_at, last_full.get(due.slug)):
            due = replace(due, kind=FULL)
        chosen.setdefault(due.slug, due)
    for due in interval_between(tenants, start, end):
        chosen.setdefault(due.slug, due)
    return sorted(chosen.values(), key=lambda d: (d.due_at, d.slug))


def plan_tick(
    tenants: Iterable[TenantSettings],
    start: dt.datetime,
    end: dt.datetime,
    *,
    quarantined: Iterable[str],
    ready: Iterable[str],
    busy: Mapping[str, str] | None = None,
    last_full: Mapping[str, dt.datetime] | None = None,
) -> Tick:
    """The tick for (start, end]: each tenant due then is synced, unless it is quarantined
    (`registry.quarantine`: skipped until a sync succeeds), not `ready` (registered a moment
    ago: its partition comes with the next sensor tick, and its sync with a later one), or
    `busy` (a run of it queued or going: skipped, its next slot comes as usual). `last_full`:
    when each tenant was last read in full (`registry.fullreads`)."""
    registered = list(tenants)
    held, known = frozenset(quarantined), frozenset(ready)
    running = dict(busy or {})
    requests: list[DueSync] = []
    skipped: list[str] = []
    pending: list[str] = []
    occupied: dict[str, str] = {}
    for due in due_in_tick(registered, start, end, last_full or {}):
        if due.slug in held:
            skipped.append(due.slug)
        elif due.slug not in known:
            pending.append(due.slug)
        elif due.slug in running:
            occupied[due.slug] = f"{due.kind} due, {running[due.slug]}"
        else:
            requests.append(due)
    return Tick(start, end, requests, skipped, pending, registered, held, occupied)
