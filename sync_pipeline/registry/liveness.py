"""A run's liveness lock: how the next sync of a tenant tells a dead run from a live one.

Every run's process holds a session-scoped Postgres advisory lock named after its Dagster run
for as long as it runs. Postgres drops it when the process dies, however it dies (SIGKILL,
OOM, a lost machine), so a run whose lock nobody holds is gone. Its sync.runs row, still
`running`, never committed an apply (the apply marks its row in its own transaction), so it
can be marked failed with the reason. The Dagster side (failing the Dagster run) is wired in
`sync_pipeline.defs.liveness`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from sync_pipeline.core import db

# A run younger than this may not have taken its lock yet (it takes it when its resources
# start, a moment after Dagster marks it started). A sync.runs row needs none: it is written
# by a step, after the lock was taken.
GRACE_SECONDS = 5
DEAD_REASON = (
    "the process running this sync ended before the sync finished (killed, or its machine "
    "stopped); nothing of its apply was committed. Found by run {by} of the same tenant"
)


def dead_reason(found_by: str) -> str:
    """Why a dead run failed, naming the run of the same tenant that found it."""
    return DEAD_REASON.format(by=found_by)


@contextmanager
def hold(engine: sa.Engine, dagster_run_id: str) -> Iterator[None]:
    """Hold the run's liveness lock on a connection of its own while the block runs."""
    with engine.connect() as conn:
        conn.execute(db.q("runs/hold_alive"), {"dagster_run_id": dagster_run_id})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(db.q("runs/release_alive"), {"dagster_run_id": dagster_run_id})
            conn.commit()


def alive(conn: sa.Connection, dagster_run_id: str) -> bool:
    """Whether some process holds the run's liveness lock."""
    name = f"sync-pipeline:run:{dagster_run_id}"  # the key runs/hold_alive locks
    return bool(conn.execute(db.q("core/advisory_lock_held"), {"name": name}).scalar())


def presumed_dead(
    conn: sa.Connection, dagster_run_id: str, started_at: float | None, now: float
) -> bool:
    """Whether a run that started at `started_at` (epoch seconds; None: unknown) is dead: old
    enough to have taken its lock (or known to have: a step wrote its sync.runs row), and
    nobody holds it. A run killed within the grace after its start is found dead at once."""
    if started_at and now - started_at < GRACE_SECONDS:
        recorded = conn.execute(db.q("runs/recorded"), {"dagster_run_id": dagster_run_id})
        if not recorded.scalar():
            return False
    return not alive(conn, dagster_run_id)


def fail_dead_rows(conn: sa.Connection, tenant: str, own_run_id: str, reason: str) -> list[str]:
    """Mark failed the tenant's sync.runs rows still `running` whose lock nobody holds (but
    the run `own_run_id`'s); returns their Dagster run ids."""
    rows = conn.execute(
        db.q("runs/fail_dead"), {"tenant": tenant, "own": own_run_id, "reason": reason}
    ).all()
    return [str(r.dagster_run_id) for r in rows]
