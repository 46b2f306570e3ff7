"""Intraday syncs and the periodic full read: when each falls due. No Dagster imports.

- A tenant with `sync_interval` N (minutes, a multiple of the schedule's tick) has a slot every
  N minutes on a UTC grid, shifted by its slug's hash so that tenants of the same interval do
  not all start on the same tick (as `default_sync_time` spreads the daily slots). One slot a
  tick at most, N minutes apart: never more often than the interval.
- The full read: the daily sync of the local day `full_read_every_days` (or more) after the
  last full read's day reads everything instead of the deltas; a tenant never read in full
  gets its full read at its next daily slot. Counted in local calendar days, so that a full
  read that began a few minutes after its slot does not push the next one back a day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from zoneinfo import ZoneInfo

from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.core.settings_model import SCHEDULE_TICK_MINUTES

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def offset_minutes(slug: str, interval: int) -> int:
    """The tenant's shift on its interval's grid: whole ticks, stable across processes."""
    ticks = interval // SCHEDULE_TICK_MINUTES
    digest = int(hashlib.sha256(f"interval:{slug}".encode()).hexdigest(), 16)
    return digest % ticks * SCHEDULE_TICK_MINUTES


def last_interval_slot(settings: TenantSettings, at: dt.datetime) -> dt.datetime | None:
    """The tenant's latest interval slot at or before `at` (aware), or None without one."""
    interval = settings.sync_interval
    if interval is None:
        return None
    step = interval * 60
    shift = offset_minutes(settings.slug, interval) * 60
    seconds = int((at - EPOCH).total_seconds()) - shift
    return EPOCH + dt.timedelta(seconds=seconds - seconds % step + shift)


def interval_slot_between(
    settings: TenantSettings, start: dt.datetime, end: dt.datetime
) -> dt.datetime | None:
    """The tenant's interval slot in (start, end], when it has one there (a tick holds at most
    one: the interval is at least a tick). Interval syncs run only while `auto_sync` is on."""
    if not settings.auto_sync:
        return None
    at = last_interval_slot(settings, end)
    return at if at is not None and start < at <= end else None


def next_interval_slot(settings: TenantSettings, after: dt.datetime) -> dt.datetime | None:
    """The tenant's next interval slot strictly after `after`, or None without an interval."""
    at = last_interval_slot(settings, after)
    if at is None or settings.sync_interval is None:
        return None
    return at + dt.timedelta(minutes=settings.sync_interval)


def full_read_due(settings: TenantSettings, at: dt.datetime, last: dt.datetime | None) -> bool:
    """Whether the daily sync at `at` is due to read in full: never read in full, or the last
    full read is `full_read_every_days` local days old or more."""
    if last is None:
        return True
    zone = ZoneInfo(settings.timezone)
    days = (at.astimezone(zone).date() - last.astimezone(zone).date()).days
    return days >= settings.full_read_every_days
