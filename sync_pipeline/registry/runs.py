"""sync.runs: one row per sync or test sync, with counts, status and the Dagster run id."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from sync_pipeline.core import db


def ensure(conn: sa.Connection, tenant: str, dagster_run_id: str, *, dry_run: bool) -> int:
    return int(
        conn.execute(
            db.q("runs/ensure"),
            {"tenant": tenant, "dagster_run_id": dagster_run_id, "dry_run": dry_run},
        ).scalar_one()
    )


def finish(
    conn: sa.Connection,
    run_id: int,
    status: str,
    counts: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    conn.execute(
        db.q("runs/finish"),
        {"id": run_id, "status": status, "counts": json.dumps(counts or {}), "error": error},
    )


def end_if_running(
    conn: sa.Connection, tenant: str, dagster_run_id: str, status: str, error: str
) -> int | None:
    """Give the run's row an outcome unless it has one (an apply marks success as it commits);
    `canceled` is a run stopped on request. Returns the row's id when it was changed."""
    params = {"tenant": tenant, "dagster_run_id": dagster_run_id, "status": status}
    return conn.execute(db.q("runs/end_if_running"), params | {"error": error}).scalar()


def set_planned(conn: sa.Connection, run_id: int, counts: dict[str, int]) -> None:
    """Record the counts of the diff written to sync.diffs for run_id (see `planned`)."""
    conn.execute(db.q("runs/set_planned"), {"id": run_id, "planned": json.dumps(counts)})


def set_person(conn: sa.Connection, run_id: int, person: str) -> None:
    """Mark run_id as a run of one person (`sync --user`), by the address or id asked."""
    conn.execute(db.q("runs/set_person"), {"run_id": run_id, "person": person})


def planned(conn: sa.Connection, run_id: int) -> dict[str, int] | None:
    """The counts of the diff computed for run_id, or None when none was computed."""
    value = conn.execute(db.q("runs/planned"), {"id": run_id}).scalar_one_or_none()
    return None if value is None else {k: int(v) for k, v in value.items()}


def by_dagster_run(conn: sa.Connection, tenant: str, dagster_run_id: str) -> sa.Row[Any] | None:
    """The tenant's sync.runs row of a Dagster run (id, status, times, counts, error, dry_run),
    or None when the run recorded none."""
    params = {"tenant": tenant, "dagster_run_id": dagster_run_id}
    return conn.execute(db.q("runs/by_dagster_run"), params).first()


def change_counts(conn: sa.Connection, run_id: int) -> dict[str, int]:
    """How many changes of each kind ("user_create", "membership_add", ...) sync.diffs holds
    for run_id."""
    rows = conn.execute(db.q("runs/diff_counts"), {"run_id": run_id})
    return {f"{r.entity}_{r.action}": int(r.n) for r in rows}


def unfinished(conn: sa.Connection, tenant: str, limit: int) -> list[sa.Row[Any]]:
    """The tenant's latest runs that did not succeed (failed, canceled, running), newest first."""
    return list(conn.execute(db.q("runs/unfinished"), {"tenant": tenant, "limit": limit}))


def last_per_tenant(conn: sa.Connection) -> dict[str, sa.Row[Any]]:
    """Each tenant's latest run (status, started_at, dry_run), by tenant slug."""
    return {r.tenant: r for r in conn.execute(db.q("runs/last_per_tenant"))}


def end_if_running_without_waiting(
    conn: sa.Connection, tenant: str, dagster_run_id: str, status: str, error: str
) -> int | None:
    """end_if_running, giving up after a second when the row is locked (by a run still
    writing it) instead of waiting: for callers about to leave. The rest of conn's
    transaction keeps the short lock timeout."""
    conn.execute(db.q("runs/wait_briefly_for_locks"))
    return end_if_running(conn, tenant, dagster_run_id, status, error)
