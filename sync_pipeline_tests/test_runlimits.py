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
