"""The audit of applied changes (sync.changes): history, and the undo of one applied sync.

`diff.apply_diff` records every change it applies, with the prior value of every column it
set (`before`) and the value it set (`after`). An undo reads one run's records and sets those
columns back, set-wise, in one transaction under the tenant lock; it is a run of its own
(`sync.runs.undo_of`), recorded the same way, so it shows in the history and can be undone.

What an undo does: users the run created are deactivated (never deleted: their rows may
already carry training history), other user changes (fields, adoption, reactivation,
deactivation, manager) get their prior values back; groups it created are marked removed,
renamed / restored / removed ones get their prior name and removed_at back; memberships it
added are deleted and memberships it removed are added again. It refuses, naming the rows,
when a later applied change (a sync or another undo) touched the same rows, unless that
later run was itself undone. The undo writes the inverse events to the outbox (a created
user's deactivation is a leaver, a deactivation's revert a joiner). Changes people made in
the app outside the sync are not recorded, so they are not detected. No Dagster imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.outbox import events
from sync_pipeline.registry import runs
from sync_pipeline.transform.rules import run_script

UNDO_STEPS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("audit/undo_address_release", {}),
    ("audit/undo_users", {"deactivating": True}),
    ("audit/undo_users", {"deactivating": False}),
    ("audit/undo_groups", {}),
    ("audit/undo_members_added", {}),
    ("audit/undo_members_removed", {}),
    ("audit/undo_decisions", {}),  # approvals and rejections of withheld changes (load/gate)
)


class UnknownRunError(LookupError):
    """The run does not exist for this tenant, or cannot be undone (bad input)."""


class UndoRefused(RuntimeError):
    """The undo would overwrite later changes (or the run was undone already)."""

    def __init__(self, message: str, conflicts: list[Conflict] | None = None) -> None:
        super().__init__(message)
        self.conflicts = conflicts or []


@dataclass(frozen=True)
class Conflict:
    entity: str
    label: str
    runs: list[int]

    def __str__(self) -> str:
        later = ", ".join(str(r) for r in self.runs)
        return f"{self.entity} {self.label} (changed again by run {later})"


@dataclass
class UndoPlan:
    tenant: str
    run_id: int
    started_at: datetime
    undo_of: int | None
    counts: dict[str, int] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def history(
    conn: sa.Connection,
    tenant: str,
    *,
    email: str | None = None,
    run_id: int | None = None,
    limit: int = 50,
) -> list[Any]:
    """The tenant's applied changes, newest first (rows of audit/history.sql)."""
    params = {"tenant": tenant, "email": email, "run_id": run_id, "limit": limit}
    return list(conn.execute(db.q("audit/history"), params).all())


def plan_undo(conn: sa.Connection, tenant: str, run_id: int) -> UndoPlan:
    """What undoing run_id would revert, and the later changes that stand in its way.

    Raises UnknownRunError for a run that is not this tenant's applied sync, UndoRefused when
    it was undone already.
    """
    params = {"tenant": tenant, "run_id": run_id}
    run = conn.execute(db.q("audit/run"), params).first()
    if run is None:
        raise UnknownRunError(
            f"tenant {tenant}: there is no run {run_id}; `sync-pipeline history {tenant}` "
            "lists the runs that changed something"
        )
    if run.dry_run:
        raise UnknownRunError(
            f"tenant {tenant}: run {run_id} is a test sync (dry run); it changed nothing"
        )
    if run.undone_by is not None:
        raise UndoRefused(
            f"tenant {tenant}: run {run_id} was undone already by run {run.undone_by}; "
            f"undo run {run.undone_by} to apply it again"
        )
    counts = {
        f"{r.entity}_{r.action}": int(r.n) for r in conn.execute(db.q("audit/run_counts"), params)
    }
    conflicts = [
        Conflict(r.entity, r.label or "?", list(r.runs))
        for r in conn.execute(db.q("audit/undo_conflicts"), params)
    ]
    return UndoPlan(tenant, run_id, run.started_at, run.undo_of, counts, conflicts)


def refusal(plan: UndoPlan, shown: int = 20) -> str:
    """The message naming the rows later runs changed again, and what to do."""
    names = "; ".join(str(c) for c in plan.conflicts[:shown])
    more = len(plan.conflicts) - shown
    runs_ = sorted({r for c in plan.conflicts for r in c.runs}, reverse=True)
    return (
        f"tenant {plan.tenant}: cannot undo run {plan.run_id}: {len(plan.conflicts)} of its "
        f"rows were changed again later: {names}"
        + (f"; and {more} more" if more > 0 else "")
        + f". Undo the later runs first, newest first (run {', '.join(map(str, runs_))}), "
        "or leave it: the next sync brings app.* in line with Microsoft 365 anyway."
    )


def undo(conn: sa.Connection, tenant: str, run_id: int) -> tuple[int, dict[str, int]]:
    """Revert run_id's applied changes; returns the undo's own run id and its counts.

    Takes the tenant lock (transaction-scoped) and runs in the caller's transaction, which
    commits or rolls back: an undo is applied whole or not at all.
    """
    with db.tenant_lock(conn, tenant):
        plan = plan_undo(conn, tenant, run_id)  # again under the lock: nothing moves now
        if plan.conflicts:
            raise UndoRefused(refusal(plan), plan.conflicts)
        undo_id = int(
            conn.execute(
                db.q("audit/undo_start"), {"tenant": tenant, "undo_of": run_id}
            ).scalar_one()
        )
        params = {"tenant": tenant, "undo_of": run_id, "run_id": undo_id}
        run_script(conn, "audit/undo_prepare", params)
        try:
            for name, extra in UNDO_STEPS:
                run_script(conn, name, params | extra)
        except sa.exc.IntegrityError as exc:
            detail = getattr(getattr(exc.orig, "diag", None), "message_detail", None) or exc.orig
            raise UndoRefused(
                f"tenant {tenant}: cannot undo run {run_id}: the app's rows no longer allow "
                f"it ({detail}); probably a person changed them in the app since. Nothing "
                "was changed."
            ) from None
        events.emit(conn, tenant, undo_id)  # the inverse events, from the undo's audit rows
        counts = {
            f"{r.entity}_{r.action}": int(r.n)
            for r in conn.execute(db.q("audit/run_counts"), {"tenant": tenant, "run_id": undo_id})
        }
        runs.finish(conn, undo_id, "success", counts={**counts, "undo_of": run_id})
    return undo_id, counts
