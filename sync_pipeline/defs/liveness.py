"""Runs whose process died (SIGKILL, OOM, a lost machine) do not stay "running" forever.

The lock protocol is `sync_pipeline.registry.liveness`: every run's process holds a lock
named after its Dagster run while the run's Graph resource lives (the in-process executor
starts a run's resources once, at its start, so: the whole run; sensors never use it, so they
keep plain resources). This module wires it to Dagster: when a run of a tenant starts, it
fails the tenant's earlier runs still STARTED (or CANCELING) in Dagster, or `running` in
sync.runs, whose lock nobody holds. The Dagster run gets a RUN_FAILURE with the reason (and
no run retry: the starting run supersedes it), the sync.runs row status `failed` with the
same reason, so `history`, `tenant list` and the UI tell the story.

The daemon's run monitoring (dagster.yaml) fails runs no later sync reaps, after
max_runtime_seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa

from sync_pipeline.load import runmode
from sync_pipeline.registry import liveness

JOBS = (runmode.SYNC_JOB, runmode.TEST_SYNC_JOB)
# The lock itself, for callers that hold it outside a run's resources (tests, the CLI).
hold = liveness.hold


def reap(instance: dg.DagsterInstance, engine: sa.Engine, tenant: str, own_run_id: str) -> int:
    """Fail the tenant's runs whose process is gone (see module doc). Returns how many."""
    reason = liveness.dead_reason(own_run_id)
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
            if not liveness.presumed_dead(conn, run.run_id, record.start_time, now):
                continue
            # Superseded by the run starting now: a run retry would only repeat it.
            instance.add_run_tags(run.run_id, {"dagster/max_retries": "0"})
            if run.status == dg.DagsterRunStatus.CANCELING:
                instance.report_run_canceled(run, message=reason)
            else:
                instance.report_run_failed(run, message=reason)
            reaped.add(run.run_id)
        reaped.update(liveness.fail_dead_rows(conn, tenant, own_run_id, reason))
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
