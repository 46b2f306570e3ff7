"""Webhook delivery of a tenant's outbox events: signed, in order, retried with backoff,
at least once, dead-lettered after MAX_ATTEMPTS.

Each event is POSTed alone as its JSON envelope (events.envelope) to the tenant's
`webhook_url`. Headers: `X-Sync-Pipeline-Event-Id` (the event id: the receiver's
idempotency key, the same on every retry), `X-Sync-Pipeline-Delivery` (a fresh id per
attempt, for the receiver's logs), `X-Sync-Pipeline-Timestamp` (Unix seconds) and
`X-Sync-Pipeline-Signature: v1=<hex HMAC-SHA256 over "<timestamp>.<body>">` with the
secret in the environment variable `webhook_secret_env`. A 2xx answer is a delivery; any
other answer, a timeout or a refused connection is retried after 30 s, 1, 2, 4 ... minutes
(at most an hour), holding the events behind it (order is kept); after MAX_ATTEMPTS the
event becomes a dead letter (sync.event_dead_letters: kept, shown in the sensor's
metadata) and the next one goes. Progress is committed after each event, so a crash between
the receiver's 2xx and the commit posts that event again: at least once. Run by the
`event_deliveries` sensor (defs/outbox.py). No Dagster imports.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass

import requests
import sqlalchemy as sa

from sync_pipeline.core import config, db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.outbox import events

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
FIRST_RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 3600.0
TIMEOUT_SECONDS = 10.0
SIGNATURE_VERSION = "v1"


class WebhookConfigError(RuntimeError):
    """The tenant's webhook cannot be used as configured (an unset secret variable)."""


@dataclass
class Outcome:
    """What one delivery round did for a tenant."""

    tenant: str
    delivered: int = 0
    dead: int = 0  # dead-lettered in this round
    failed: bool = False  # the round stopped at an event that will be retried
    busy: bool = False  # another deliverer holds the tenant
    last_error: str | None = None
    pending: int = 0  # events still waiting after the round
    dead_total: int = 0  # dead letters kept for the tenant
    first_dead: int | None = None


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value: `v1=` and the hex HMAC-SHA256 of `<timestamp>.<body>`."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver checks (constant time); it should also refuse old timestamps."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff(attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: 30 s, doubling, at most an hour."""
    return min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)


def secret_of(settings: TenantSettings) -> bytes:
    name = settings.webhook_secret_env
    value = config.secret(name) if name else None
    if not value:
        raise WebhookConfigError(
            f"tenant {settings.slug}: environment variable {name} (webhook_secret_env) is not "
            "set in the process that delivers the webhook (the Dagster daemon's sensors)"
        )
    return value.encode()


def deliver(
    engine: sa.Engine,
    settings: TenantSettings,
    *,
    budget_seconds: float = 20.0,
    batch: int = 200,
    session: requests.Session | None = None,
) -> Outcome:
    """Post the tenant's undelivered events in order until they are done, one fails, or
    `budget_seconds` pass (a sensor tick must end); returns what happened."""
    tenant, out = settings.slug, Outcome(settings.slug)
    secret = secret_of(settings)
    http = session or _session(settings)
    deadline = time.monotonic() + budget_seconds
    with engine.connect() as conn:
        if not conn.execute(db.q("outbox/webhook_lock"), {"tenant": tenant}).scalar():
            conn.rollback()
            out.busy = True
            return out
        conn.commit()
        try:
            _round(conn, settings, secret, http, deadline, batch, out)
        finally:
            conn.rollback()
            conn.execute(db.q("outbox/webhook_unlock"), {"tenant": tenant})
            conn.commit()
        row = conn.execute(db.q("outbox/backlog"), {"tenant": tenant}).one()
        conn.rollback()
    out.pending, out.dead_total, out.first_dead = int(row.pending), int(row.dead), row.first_dead
    return out


def _round(
    conn: sa.Connection,
    settings: TenantSettings,
    secret: bytes,
    http: requests.Session,
    deadline: float,
    batch: int,
    out: Outcome,
) -> None:
    tenant = settings.slug
    assert settings.webhook_url is not None
    cursor = _cursor(conn, tenant)
    conn.commit()
    if cursor.next_attempt_at is not None and cursor.next_attempt_at > _now(conn):
        out.failed, out.last_error = True, cursor.last_error
        return  # backing off
    attempts, after = int(cursor.attempts), int(cursor.delivered_id)
    while time.monotonic() < deadline:
        found = events.read(conn, tenant, after, batch)
        conn.commit()
        if not found:
            return
        for event in found:
            if time.monotonic() >= deadline:
                return
            error = _post(http, settings.webhook_url, secret, event)
            params = {"tenant": tenant, "event_id": event["id"]}
            if error is None:
                conn.execute(db.q("outbox/delivered"), params)
                conn.commit()
                out.delivered += 1
                attempts, after = 0, event["id"]
                continue
            attempts += 1
            out.last_error = error
            log.warning("tenant %s: event %s: webhook %s", tenant, event["id"], error)
            if attempts >= MAX_ATTEMPTS:
                conn.execute(
                    db.q("outbox/dead_letter"), params | {"attempts": attempts, "error": error}
                )
                conn.execute(db.q("outbox/delivered"), params)
                conn.commit()
                out.dead += 1
                attempts, after = 0, event["id"]
                continue
            conn.execute(
                db.q("outbox/failed"),
                {
                    "tenant": tenant,
                    "attempts": attempts,
                    "error": error,
                    "delay_seconds": backoff(attempts),
                },
            )
            conn.commit()
            out.failed = True
            return


def _cursor(conn: sa.Connection, tenant: str) -> sa.Row:
    row = None
    for statement in db.statements("outbox/cursor"):
        result = conn.execute(sa.text(statement), {"tenant": tenant})
        if result.returns_rows:
            row = result.one()
    assert row is not None
    return row


def _now(conn: sa.Connection) -> dt.datetime:
    # the database's clock, which set next_attempt_at
    return conn.execute(db.q("outbox/now")).scalar_one()


def _post(http: requests.Session, url: str, secret: bytes, event: dict) -> str | None:
    """None when the receiver took the event (2xx), else what went wrong, in a few words."""
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "sync-pipeline-webhook/1",
        "X-Sync-Pipeline-Event-Id": str(event["id"]),
        "X-Sync-Pipeline-Delivery": str(uuid.uuid4()),
        "X-Sync-Pipeline-Timestamp": timestamp,
        "X-Sync-Pipeline-Signature": sign(secret, timestamp, body),
    }
    try:
        answer = http.post(
            url, data=body, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False
        )
    except requests.RequestException as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if 200 <= answer.status_code < 300:
        return None
    return f"HTTP {answer.status_code}"


def _session(settings: TenantSettings) -> requests.Session:
    http = requests.Session()
    # REQUESTS_CA_BUNDLE in the environment would override `verify` (docs: TRAPS)
    http.trust_env = False
    http.verify = settings.webhook_ca_bundle or True
    return http


def retention(conn: sa.Connection, settings: TenantSettings) -> int:
    """Delete the tenant's events past event_retention_days (with a webhook: delivered ones
    only); returns how many went. In the caller's transaction."""
    params = {
        "tenant": settings.slug,
        "days": settings.event_retention_days,
        "webhook": settings.webhook_url is not None,
    }
    return conn.execute(db.q("outbox/retention"), params).rowcount
