"""What the receiver and the notification sensors keep in Postgres (migration 022): each
tenant's subscriptions with the SHA-256 of their clientState (never the secret), the tenants
marked dirty, and the counts of accepted and rejected notifications.

Notifications carry no data the sync trusts: a mark only asks for an incremental sync, whose
delta read decides what changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

import sqlalchemy as sa

from sync_pipeline.core import db

ACCEPTED = "accepted"
REJECTED = "rejected"
UNKNOWN_TENANT = ""  # the counts' tenant for a notification of no known subscription


def digest(client_state: str) -> bytes:
    """What is stored of a clientState: its SHA-256 (the secret is 256 random bits, so a
    plain hash is enough; no key to lose)."""
    return hashlib.sha256(client_state.encode()).digest()


@dataclass(frozen=True)
class Subscription:
    tenant: str
    resource: str
    subscription_id: str
    notification_url: str
    expires_at: dt.datetime
    lifecycle: str | None


@dataclass(frozen=True)
class Dirty:
    tenant: str
    first_at: dt.datetime
    last_at: dt.datetime
    notifications: int
    reason: str

    def due(self, debounce: dt.timedelta, now: dt.datetime) -> bool:
        """Whether the mark's sync is due at `now`: once its FIRST notification is `debounce`
        old. The notifications of that window become one sync, and a change waits at most the
        debounce however many follow it. Counting from the last one instead (a quiet spell)
        put a tenant whose changes kept coming closer together than the debounce off until
        they stopped, and every change that restarted the wait went over issue 17's bound of
        two minutes (benchmarks/freshness.py: p95 135 s with a 60 s debounce)."""
        return now - self.first_at >= debounce


def owner(conn: sa.Connection, subscription_id: str, client_state: str | None) -> str | None:
    """The tenant of the subscription when `client_state` is its secret; None otherwise (an
    unknown subscription, a missing or wrong clientState). Compared in constant time."""
    row = conn.execute(
        db.q("notifications/subscription_by_id"), {"subscription_id": subscription_id}
    ).first()
    if row is None or not isinstance(client_state, str):
        return None
    if not hmac.compare_digest(bytes(row.client_state_hash), digest(client_state)):
        return None
    return str(row.tenant)


def tenant_of(conn: sa.Connection, subscription_id: str) -> str:
    row = conn.execute(
        db.q("notifications/subscription_by_id"), {"subscription_id": subscription_id}
    ).first()
    return str(row.tenant) if row is not None else UNKNOWN_TENANT


def mark_dirty(
    conn: sa.Connection, tenant: str, at: dt.datetime, reason: str, notifications: int = 1
) -> None:
    params = {"tenant": tenant, "at": at, "reason": reason, "n": notifications}
    conn.execute(db.q("notifications/mark_dirty"), params)


def count(conn: sa.Connection, tenant: str, kind: str, at: dt.datetime, n: int = 1) -> None:
    conn.execute(db.q("notifications/count"), {"tenant": tenant, "kind": kind, "n": n, "at": at})


def counts(conn: sa.Connection, tenant: str) -> dict[str, int]:
    rows = conn.execute(db.q("notifications/counts"), {"tenant": tenant})
    return {str(k): int(n) for k, n in rows.all()}


def record_lifecycle(
    conn: sa.Connection, subscription_id: str, event: str, at: dt.datetime
) -> None:
    params = {"subscription_id": subscription_id, "event": event, "at": at}
    conn.execute(db.q("notifications/lifecycle"), params)


def dirty(conn: sa.Connection) -> list[Dirty]:
    return [Dirty(**r._mapping) for r in conn.execute(db.q("notifications/dirty"))]


def consume(conn: sa.Connection, mark: Dirty) -> bool:
    """Clear the mark a sync was requested for; False when a notification came since (the
    mark stays, for the next sync)."""
    params = {"tenant": mark.tenant, "last_at": mark.last_at}
    return conn.execute(db.q("notifications/consume"), params).rowcount == 1


def subscriptions(conn: sa.Connection, tenant: str) -> dict[str, Subscription]:
    """The tenant's subscriptions by resource."""
    rows = conn.execute(db.q("notifications/subscriptions"), {"tenant": tenant})
    return {str(r.resource): Subscription(**r._mapping) for r in rows}


def subscribed_tenants(conn: sa.Connection) -> list[str]:
    return list(conn.execute(db.q("notifications/subscribed_tenants")).scalars())


def save(
    conn: sa.Connection,
    tenant: str,
    resource: str,
    subscription_id: str,
    client_state: str,
    notification_url: str,
    expires_at: dt.datetime,
) -> None:
    conn.execute(
        db.q("notifications/save_subscription"),
        {
            "tenant": tenant,
            "resource": resource,
            "subscription_id": subscription_id,
            "client_state_hash": digest(client_state),
            "notification_url": notification_url,
            "expires_at": expires_at,
        },
    )


def renewed(
    conn: sa.Connection, tenant: str, subscription_id: str, expires_at: dt.datetime
) -> None:
    params = {"tenant": tenant, "subscription_id": subscription_id, "expires_at": expires_at}
    conn.execute(db.q("notifications/renewed"), params)


def forget(conn: sa.Connection, tenant: str, subscription_id: str) -> None:
    params = {"tenant": tenant, "subscription_id": subscription_id}
    conn.execute(db.q("notifications/forget_subscription"), params)
