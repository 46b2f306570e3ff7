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


def planned(conn: sa.Connection, run_id: int) -> dict[str, int] | None:
    """The counts of the diff computed for run_id, or None when none was computed."""
    value = conn.execute(db.q("runs/planned"), {"id": run_id}).scalar_one_or_none()
    return None if value is None else {k: int(v) for k, v in value.items()}
