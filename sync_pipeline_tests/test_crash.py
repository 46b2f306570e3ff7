"""A sync process killed for real in the middle of its apply: app.* is all or nothing."""

import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline_tests.support.database import app_snapshot, tenant_lock_held
from sync_pipeline_tests.support.events import events
from sync_pipeline_tests.support.waiting import wait_until


def sync_process(tenant: str, home: str, database_url: str) -> subprocess.Popen:
    env = {**os.environ, "SYNC_PIPELINE_HOME": home, "DATABASE_URL": database_url}
    return subprocess.Popen(
        [sys.executable, "-m", "sync_pipeline.cli", "sync", tenant],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_during_apply(proc: subprocess.Popen, engine: sa.Engine, tenant: str) -> bool:
    """SIGKILL the process while it holds the tenant's apply lock; False if it finished first."""
    with engine.connect() as conn:
        while proc.poll() is None:
            # the tenant lock is the extract's too: the apply's comes after the diff's row
            diffed = conn.execute(
                sa.text("SELECT count(*) FROM sync.runs WHERE tenant = :t"), {"t": tenant}
            ).scalar()
            if (
                diffed
                and conn.execute(
                    db.q("core/advisory_lock_held"), {"name": f"sync-pipeline:tenant:{tenant}"}
                ).scalar()
            ):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            conn.rollback()
            time.sleep(0.002)  # the poll's own pace: the apply lasts a fraction of a second
    return False


def test_killed_mid_apply_leaves_app_before_or_after_and_next_sync_completes(
    register, tenant_slug, engine, database_url, tmp_path
):
    killed = False
    for attempt in range(5):  # the apply lasts a fraction of a second; catch it in the act
        tenant = f"{tenant_slug}-{attempt}"
        register(tenant)
        before = app_snapshot(engine, tenant)
        proc = sync_process(tenant, str(tmp_path / "home"), database_url)
        killed = kill_during_apply(proc, engine, tenant)
        if killed:
            break
        assert proc.returncode == 0, proc.stderr.read().decode()
    assert killed, "never caught the sync inside its apply"
    assert proc.returncode == -signal.SIGKILL
    # The server notices the dropped connection, rolls the apply back, then lets its lock go.
    wait_until(lambda: not tenant_lock_held(engine, tenant), 30, "the killed apply's rollback")
    after_kill = app_snapshot(engine, tenant)
    assert after_kill == before  # nothing of the interrupted apply is visible
    assert events(engine, tenant) == []  # nor any of its events (the outbox, issue 18)
    assert not tenant_lock_held(engine, tenant)

    with engine.connect() as conn:
        killed_run = conn.execute(
            sa.text("SELECT id, dagster_run_id, status FROM sync.runs WHERE tenant = :t"),
            {"t": tenant},
        ).one()
    assert killed_run.status == "running"  # nobody was left to say otherwise

    again = sync_process(tenant, str(tmp_path / "home"), database_url)
    assert again.wait(timeout=300) == 0, again.stderr.read().decode()
    # The next sync found the killed run's process gone and failed it, with the reason, in
    # sync.runs and in Dagster (and promised no retry of it).
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, error FROM sync.runs WHERE id = :id"), {"id": killed_run.id}
        ).one()
        dagster_status = conn.execute(
            sa.text("SELECT status FROM runs WHERE run_id = :r"),
            {"r": killed_run.dagster_run_id},
        ).scalar_one()
    assert row.status == "failed" and "ended before the sync finished" in row.error
    assert dagster_status == "FAILURE"
    env = {**os.environ, "SYNC_PIPELINE_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}
    history = subprocess.run(
        [sys.executable, "-m", "sync_pipeline.cli", "history", tenant, "--limit", "1"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"sync run {killed_run.id} (" in history.stdout
    assert "failed: the process running this sync ended" in history.stdout
    final = app_snapshot(engine, tenant)
    assert final["app.users"] and final["app.group_members"]
    joined = [e for e in events(engine, tenant) if e["type"] == "joiner"]
    assert len(joined) == len(final["app.users"])  # the completed apply's, once each
    repeat = sync_process(tenant, str(tmp_path / "home"), database_url)
    assert repeat.wait(timeout=300) == 0
    assert app_snapshot(engine, tenant) == final  # converged
