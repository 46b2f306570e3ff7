"""Writing the outbox (sync.events) in the transaction of the changes, and reading it.

`emit` turns one run's audit rows (sync.changes) into events, set-wise in SQL
(sql/outbox/emit.sql), and sends a NOTIFY on CHANNEL that Postgres delivers when the
transaction commits: an event exists, and is announced, exactly when its change does. Every
writer of sync.changes calls it: the apply (load/diff.py), an undo (audit/changes.py) and a
decision (load/gate.py, whose rows change no app row and make no event). `read` is the
consumer's cursor. No Dagster imports.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from sync_pipeline.core import db

log = logging.getLogger(__name__)

# The channel a commit with events notifies; the payload is JSON:
# {"tenant": slug, "run_id": id, "last_id": the largest event id it wrote}.
CHANNEL = "sync_pipeline_events"
TYPES = ("joiner", "leaver", "mover", "address_changed", "group_created", "group_removed")
SCHEMA_VERSION = 1


def emit(conn: sa.Connection, tenant: str, run_id: int) -> dict[str, int]:
    """Write run_id's events in the caller's transaction; returns their count per type."""
    params = {"tenant": tenant, "run_id": run_id}
    counts: dict[str, int] = {}
    last_id = 0
    *settings, insert = db.statements("outbox/emit")  # planner settings, then the statement
    for statement in settings:
        conn.execute(sa.text(statement), params)
    for row in conn.execute(sa.text(insert), params):
        counts[row.type] = int(row.n)
        last_id = max(last_id, int(row.last_id))
    conn.execute(db.q("outbox/emit_end"))
    if counts:
        message = json.dumps({"tenant": tenant, "run_id": run_id, "last_id": last_id})
        conn.execute(db.q("outbox/notify"), {"channel": CHANNEL, "message": message})
    return counts


def run_counts(conn: sa.Connection, tenant: str, run_id: int) -> dict[str, int]:
    """The events run_id wrote, per type (every type, zeros included)."""
    params = {"tenant": tenant, "run_id": run_id}
    found = {r.type: r.n for r in conn.execute(db.q("outbox/run_counts"), params)}
    return {t: int(found.get(t, 0)) for t in TYPES}


def read(conn: sa.Connection, tenant: str, after: int, limit: int = 1000) -> list[dict[str, Any]]:
    """The tenant's events with an id above `after`, oldest first, as their JSON envelope
    (docs/events.schema.json)."""
    rows = conn.execute(db.q("outbox/read"), {"tenant": tenant, "after": after, "limit": limit})
    return [envelope(r) for r in rows]


def follow(
    engine: sa.Engine, tenant: str, after: int, *, poll_seconds: float = 5.0, batch: int = 1000
) -> Iterator[dict[str, Any]]:
    """The tenant's events after `after`, then each as its transaction commits, for ever.

    Woken by the commit's NOTIFY (LISTEN on a connection of its own); it also reads every
    `poll_seconds` without one, so a lost notification, a server restart or a pooler that
    does not pass LISTEN on (pgbouncer in transaction mode) only delays an event. The cursor is
    the last id yielded: nothing is skipped or yielded twice (a tenant's ids become visible in
    increasing order, migration 025)."""
    listener = _listen(engine)
    try:
        while True:
            with engine.connect() as conn:
                found = read(conn, tenant, after, batch)
            for event in found:
                after = event["id"]
                yield event
            if len(found) == batch:
                continue  # more are waiting
            listener = _wait(engine, listener, poll_seconds)
    finally:
        if listener is not None:
            listener.close()


def _listen(engine: sa.Engine) -> Any:
    """A connection LISTENing on CHANNEL (autocommit), or None when none can be opened (the
    poll goes on)."""
    try:
        raw = engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()  # ours for good: it never goes back to the pool with a LISTEN on it
        assert conn is not None
        conn.autocommit = True
        conn.execute(db.load_sql("outbox/listen"))
        return conn
    except Exception as exc:  # the poll is the fallback: say so once, go on
        log.warning("cannot LISTEN on %s (%s); polling instead", CHANNEL, exc)
        return None


def _wait(engine: sa.Engine, listener: Any, seconds: float) -> Any:
    """Until a notification arrives or `seconds` pass; the listener, reopened if it broke."""
    if listener is None:
        time.sleep(seconds)
        return _listen(engine)
    try:
        for _ in listener.notifies(timeout=seconds, stop_after=1):
            break
        return listener
    except Exception as exc:  # the server went away: poll until it is back
        log.warning("LISTEN connection lost (%s); reconnecting", exc)
        listener.close()
        time.sleep(seconds)
        return _listen(engine)


def envelope(row: Any) -> dict[str, Any]:
    """An event as consumers receive it (the events command, the webhook's body)."""
    return {
        "id": int(row.id),
        "tenant": row.tenant,
        "type": row.type,
        "sync_run": int(row.run_id),
        "user_id": row.user_id,
        "group_id": row.group_id,
        "external_id": row.external_id,
        "created_at": row.created_at.isoformat(),
        "payload": row.payload,
    }
