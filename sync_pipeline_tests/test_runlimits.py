"""CLI syncs honour the one-run-per-tenant limit of the run queue, daemon or not."""

from __future__ import annotations

import uuid

import dagster as dg
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipeline.cli import main
from sync_pipeline.core import environment
from sync_pipeline.defs import liveness
from sync_pipeline.registry.runlimits import EXIT_BUSY


def test_a_cli_sync_is_refused_while_the_tenant_has_a_run_in_progress(
    register, engine, tenant_slug, database_url
):
    register(tenant_slug)
    environment.prepare(migrate=False)  # the CLI's own instance (DAGSTER_HOME)
    instance = dg.DagsterInstance.get()
    for tags in ({"tenant": tenant_slug}, {"dagster/partition": tenant_slug}):  # CLI, UI
        busy = str(uuid.uuid4())
        instance.add_run(
            dg.DagsterRun(
                job_name="sync", run_id=busy, tags=tags, status=dg.DagsterRunStatus.STARTED
            )
        )
        with liveness.hold(engine, busy):  # a live run holds its lock (a dead one is reaped)
            result = CliRunner().invoke(main, ["sync", tenant_slug])
        assert result.exit_code == EXIT_BUSY, result.output
        flat = " ".join(result.output.split())
        assert f"tenant {tenant_slug} already has a run in progress: Dagster run {busy}" in flat
        instance.delete_run(busy)
    with engine.connect() as conn:
        assert not conn.execute(
            sa.text("SELECT count(*) FROM app.users WHERE tenant = :t"), {"t": tenant_slug}
        ).scalar()
    # the run over, the sync goes ahead
    result = CliRunner().invoke(main, ["sync", tenant_slug, "--dry-run"])
    assert result.exit_code == 0, result.output


def test_a_run_started_beside_an_earlier_one_stops_before_reading(
    register, engine, tenant_slug, database_url, instance
):
    """Two runs of a tenant started in the same instant both pass the checks made before a
    run starts; the later one finds the earlier at its first step and stops there: nothing
    read or staged, its sync.runs row canceled (not a failure: no quarantine count)."""
    from sync_pipeline_tests.support.pipeline import materialise

    register(tenant_slug)
    earlier = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(
            job_name="sync",
            run_id=earlier,
            tags={"tenant": tenant_slug, "dagster/partition": tenant_slug},
            status=dg.DagsterRunStatus.STARTED,
        )
    )
    with liveness.hold(engine, earlier):  # alive: not reaped as dead
        result = materialise(instance, tenant_slug, database_url=database_url,
                             raise_on_error=False)  # fmt: skip
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "graph_directory"
    message = failure.step_failure_data.error.message
    assert f"a sync of {tenant_slug} is running (run {earlier[:8]}" in message
    with engine.connect() as conn:
        staged = conn.execute(
            sa.text("SELECT count(*) FROM staging.users WHERE tenant = :t"), {"t": tenant_slug}
        ).scalar()
        status = conn.execute(
            sa.text("SELECT status FROM sync.runs WHERE tenant = :t AND dagster_run_id = :r"),
            {"t": tenant_slug, "r": result.run_id},
        ).scalar()
    assert (staged, status) == (0, "canceled")
    instance.delete_run(earlier)
