"""Runs whose process died (SIGKILL, OOM, a lost machine) do not stay "running" forever.

Every run's process holds a Postgres advisory lock named after its Dagster run for as long as
the run's Graph resource lives (the in-process executor starts a run's resources once, at its
start, so: the whole run; sensors never use it, so they keep plain resources). Postgres
releases it when the process dies, however it dies. When a run of a tenant starts, it fails
the tenant's earlier runs still STARTED (or CANCELING) in Dagster, or `running` in
sync.runs, whose lock nobody holds: the Dagster run gets a RUN_FAILURE with the reason (and
no run retry: the starting run supersedes it), the sync.runs row status `failed` with the
same reason, so `history`, `tenant list` and the UI tell the story. A run's apply marks its
row in the apply's own transaction, so a row still `running` never committed an apply.

The daemon's run monitoring (dagster.yaml) fails runs no later sync reaps, after
max_runtime_seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa

from sync_pipeline.core import db

# A Dagster run younger than this may not have taken its lock yet (it takes it when its
# resources start, a moment after Dagster marks it STARTED). A sync.runs row needs none: it is
# written by a step, after the lock was taken.
GRACE_SECONDS = 5
DEAD_REASON = (
    "the process running this sync ended before the sync finished (killed, or its machine "
    "stopped); nothing of its apply was committed. Found by run {by} of the same tenant"
)
JOBS = ("sync", "test_sync")


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
    name = f"sync-pipeline:run:{dagster_run_id}"  # the key runs/hold_alive locks
    return bool(conn.execute(db.q("core/advisory_lock_held"), {"name": name}).scalar())


def reap(instance: dg.DagsterInstance, engine: sa.Engine, tenant: str, own_run_id: str) -> int:
    """Fail the tenant's runs whose process is gone (see module doc). Returns how many."""
    reason = DEAD_REASON.format(by=own_run_id)
    reaped: set[str] = set()
    records = instance.get_run_records(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING],
            tags={"dagster/partition": tenant},
        )
    )
    now = time.time()
    with engine.begin() as conn:
        for record in records:
            run = record.dagster_run
            if run.run_id == own_run_id or run.job_name not in JOBS:
                continue
            if record.start_time and now - record.start_time < GRACE_SECONDS:
                continue
            if alive(conn, run.run_id):
                continue
            # Superseded by the run starting now: a run retry would only repeat it.
            instance.add_run_tags(run.run_id, {"dagster/max_retries": "0"})
            if run.status == dg.DagsterRunStatus.CANCELING:
                instance.report_run_canceled(run, message=reason)
            else:
                instance.report_run_failed(run, message=reason)
            reaped.add(run.run_id)
        rows = conn.execute(
            db.q("runs/fail_dead"),
            {"tenant": tenant, "own": own_run_id, "reason": reason},
        ).all()
    reaped.update(str(r.dagster_run_id) for r in rows)
    return len(reaped)


@contextmanager
def run_guard(context: dg.InitResourceContext, engine: sa.Engine) -> Iterator[None]:
    """For a run's resources: hold the run's lock, then reap the tenant's dead runs."""
    run = context.run
    tenant = run.tags.get("dagster/partition") if run is not None else None
    if run is None or run.job_name not in JOBS or context.instance is None:
        yield  # a sensor, a schedule or a test outside a run
        return
    with hold(engine, run.run_id):
        if tenant:
            n = reap(context.instance, engine, tenant, run.run_id)
            if n and context.log is not None:
                context.log.warning(f"tenant {tenant}: marked {n} dead earlier run(s) failed")
        yield
