"""Staleness: how old each tenant's last complete read and last applied sync are, and the stale
episodes the staleness sensor reports (sync.stale_tenants, migration 019).

A *complete read* is an extraction that committed: the extraction stages the whole directory
and records it in staging.extractions in one transaction, so a read that failed, was stopped,
or lost pages (the `$count` check) rolls back and records nothing. The *last applied sync* is
the last real sync whose apply committed (sync.runs: not a test sync, an undo or a decision).

A tenant is stale when its last complete read, or its registration when it was never read, is
older than its `stale_after_hours`. Each stale episode (one read gone stale) is reported once,
then again every REPEAT while it lasts; the tenant's admin is told once. A fresh read ends it.
The sensor that does so is `sync_pipeline.defs.staleness`; every time it uses is the `now`
its callers pass. No Dagster imports here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from humanfriendly import format_timespan

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings

# An episode's alert is repeated after this long, while the tenant stays stale.
REPEAT = dt.timedelta(days=1)


def age(delta: dt.timedelta) -> str:
    """A duration as people say it, to two units and no finer than it matters: '40 seconds',
    '3 hours and 5 minutes', '1 day and 12 hours' (never '3 hours and 5 seconds')."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds >= 86400:
        seconds -= seconds % 3600  # past a day, whole hours
    elif seconds >= 3600:
        seconds -= seconds % 60  # past an hour, whole minutes
    return str(format_timespan(seconds, max_units=2))


def local(t: dt.datetime, zone: str) -> str:
    """A time in the tenant's zone, as the other commands show times."""
    return t.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


@dataclass(frozen=True)
class Freshness:
    """One tenant's reads and syncs as of `now`."""

    settings: TenantSettings
    now: dt.datetime
    registered_at: dt.datetime
    read_at: dt.datetime | None  # the last complete read
    applied_at: dt.datetime | None  # the last applied sync
    last_error: str | None = None  # the latest failed sync or test sync since that read
    failed_at: dt.datetime | None = None

    @property
    def tenant(self) -> str:
        return self.settings.slug

    @property
    def limit(self) -> dt.timedelta:
        return dt.timedelta(hours=self.settings.stale_after_hours)

    @property
    def read_age(self) -> dt.timedelta | None:
        return None if self.read_at is None else self.now - self.read_at

    @property
    def applied_age(self) -> dt.timedelta | None:
        return None if self.applied_at is None else self.now - self.applied_at

    @property
    def stale_since(self) -> dt.datetime:
        """When the tenant is (or was, or will be) stale without another complete read."""
        return (self.read_at or self.registered_at) + self.limit

    @property
    def stale(self) -> bool:
        return self.now > self.stale_since

    def read_text(self) -> str:
        """'3 hours ago (2026-12-07 11:30 CET)' or 'never'."""
        return self._ago(self.read_at)

    def applied_text(self) -> str:
        return self._ago(self.applied_at)

    def _ago(self, t: dt.datetime | None) -> str:
        if t is None:
            return "never"
        return f"{age(self.now - t)} ago ({local(t, self.settings.timezone)})"

    def sentence(self) -> str:
        """What the check, the alert and the notice say first: how old the read is, against
        the limit."""
        limit = f"stale_after_hours {self.settings.stale_after_hours}"
        if self.read_at is None:
            since = f"registered {age(self.now - self.registered_at)} ago"
            return f"tenant {self.tenant}: no complete read of Graph yet ({since}; {limit})"
        where = "older than" if self.stale else "within"
        return f"tenant {self.tenant}: last complete read {self.read_text()}, {where} {limit}"


def last_read(conn: sa.Connection, tenant: str) -> dt.datetime | None:
    """When the tenant's last complete read was (None: never read)."""
    return conn.execute(db.q("staleness/last_read"), {"tenant": tenant}).scalar()


def freshness(
    conn: sa.Connection, registered: Iterable[TenantSettings], now: dt.datetime
) -> list[Freshness]:
    """The freshness of these tenants as of `now` (tenants no longer registered left out)."""
    by_slug = {s.slug: s for s in registered}
    if not by_slug:
        return []
    rows = conn.execute(db.q("staleness/freshness"), {"tenants": list(by_slug)})
    return [
        Freshness(
            settings=by_slug[r.tenant],
            now=now,
            registered_at=r.registered_at,
            read_at=r.read_at,
            applied_at=r.applied_at,
            last_error=r.last_error,
            failed_at=r.failed_at,
        )
        for r in rows
    ]


def of_tenant(conn: sa.Connection, settings: TenantSettings, now: dt.datetime) -> Freshness:
    """One registered tenant's freshness."""
    found = freshness(conn, [settings], now)
    if not found:
        raise LookupError(f"tenant {settings.slug} is not registered")
    return found[0]


def observe(conn: sa.Connection, f: Freshness) -> None:
    """Record a stale tenant's episode: a new one when its last read is not the one recorded."""
    conn.execute(
        db.q("staleness/observe"),
        {"tenant": f.tenant, "read_at": f.read_at, "stale_since": f.stale_since},
    )


def claim_alert(conn: sa.Connection, f: Freshness) -> int | None:
    """The number of the alert due now in the tenant's episode (1: the first), claimed in
    conn's transaction; None when one was made less than REPEAT ago. Send it in the same
    transaction: a failed send rolls the claim back."""
    params = {"tenant": f.tenant, "now": f.now, "again_before": f.now - REPEAT}
    return conn.execute(db.q("staleness/claim_alert"), params).scalar()


def claim_admin(conn: sa.Connection, f: Freshness) -> bool:
    """Whether the admin's notice is due (once per episode), claimed in conn's transaction."""
    params = {"tenant": f.tenant, "now": f.now}
    return conn.execute(db.q("staleness/claim_admin"), params).first() is not None


def clear(conn: sa.Connection, stale: Iterable[str]) -> list[str]:
    """End the episodes of every tenant not in `stale` (read again, or removed); returns the
    tenants whose episode ended."""
    ended = conn.execute(db.q("staleness/clear"), {"stale": list(stale)})
    return sorted(r.tenant for r in ended)
