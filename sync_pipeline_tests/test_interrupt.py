"""Ctrl-C on a real `sync-pipeline sync` process, at every stage: the message, the exit code
and app.* (unchanged when stopped before the apply, fully applied when stopped during it).

The test hook SYNC_PIPELINE_TEST_PAUSE (defs/stopping.py) holds each stage a few seconds so
that SIGINT lands inside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from sync_pipeline_tests.support.database import app_snapshot, tenant_lock_held
from sync_pipeline_tests.support.waiting import wait_until

PAUSE = 4


class SyncProcess:
    """`python -m sync_pipeline.cli sync TENANT` with its stderr read line by line."""

    def __init__(self, tenant: str, home: str, database_url: str, *args: str, **env: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sync_pipeline.cli", "sync", tenant, *args],
            env={**os.environ, "SYNC_PIPELINE_HOME": home, "DATABASE_URL": database_url, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 120) -> None:
        def seen() -> bool:
            if any(text in line for line in self.lines):
                return True
            assert self.proc.poll() is None, "\n".join(self.lines)
            return False

        wait_until(seen, timeout, lambda: f"{text!r} in:\n" + "\n".join(self.lines))

    def ctrl_c(self) -> None:
        """SIGINT to the whole process group, as a terminal's Ctrl-C: children get it too."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # stderr is the reader thread's alone
        self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return self.proc.returncode, out, " ".join(" ".join(self.lines).split())


# An open transaction that has written the tenant's run row: the diff, paused inside it.
DIFF_OPEN = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
    " WHERE l.relation = 'sync.runs'::regclass AND l.mode = 'RowExclusiveLock'"
    " AND a.state = 'idle in transaction' AND a.datname = current_database())"
)


def inside(engine: sa.Engine, tenant: str, stage: str) -> bool:
    """Whether the sync is inside `stage`'s paused work (the test hook's pause), as far as the
    database shows it: the extract and the apply pause holding the tenant's lock, the diff
    inside the transaction that wrote its run row. The transform's pause leaves no trace (its
    transaction has run nothing yet); a Ctrl-C anywhere in its step stops before the diff."""
    if stage in ("extract", "apply"):
        return tenant_lock_held(engine, tenant)
    if stage == "diff":
        with engine.connect() as conn:
            return bool(conn.execute(DIFF_OPEN).scalar())
    return True


def run_status(engine: sa.Engine, tenant: str) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT status, error FROM sync.runs WHERE tenant = :t ORDER BY id"),
            {"t": tenant},
        )
        return [tuple(r) for r in rows]


@pytest.mark.parametrize("stage", ["extract", "transform", "diff"])
def test_ctrl_c_before_the_apply_stops_and_changes_nothing(
    stage, register, tenant_slug, engine, database_url, tmp_path
):
    register(tenant_slug)
    before = app_snapshot(engine, tenant_slug)
    run = SyncProcess(
        tenant_slug,
        str(tmp_path / "home"),
        database_url,
        SYNC_PIPELINE_TEST_PAUSE=f"{stage}:{PAUSE}",
    )
    run.wait_for(f"▶ {stage}")
    wait_until(lambda: inside(engine, tenant_slug, stage), PAUSE, f"the {stage}'s pause")
    run.ctrl_c()
    code, out, err = run.finish()
    assert code == 130, err
    assert f"Ctrl-C: stopping the sync of {tenant_slug} at the next step (now: {stage})" in err
    assert "before the apply: app.* is unchanged" in err, out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert app_snapshot(engine, tenant_slug) == before
    # the run's row (from the diff on) is canceled, never left running nor failed
    assert all(status == "canceled" for status, _ in run_status(engine, tenant_slug))


def test_ctrl_c_during_the_apply_waits_for_its_commit(
    register, tenant_slug, engine, database_url, tmp_path
):
    register(tenant_slug)
    run = SyncProcess(
        tenant_slug, str(tmp_path / "home"), database_url, SYNC_PIPELINE_TEST_PAUSE=f"apply:{PAUSE}"
    )
    run.wait_for("▶ apply")
    wait_until(lambda: inside(engine, tenant_slug, "apply"), PAUSE, "the apply's pause")
    run.ctrl_c()
    code, out, err = run.finish()
    assert code == 130, err
    assert "Ctrl-C: the apply is committing; waiting" in err
    assert f"the apply had started and committed: the sync of {tenant_slug} completed" in err
    # the stage lines carry the counts that matter
    assert "✓ transform users in scope " in err and "excluded: " in err
    assert "✓ apply users: created " in err and ", updated 0, deactivated 0" in err
    assert "user create" in out  # the summary of what was applied
    with engine.connect() as conn:
        planned = conn.execute(
            sa.text(
                "SELECT count(*) FROM sync.diffs d JOIN sync.runs r ON r.id = d.run_id "
                "WHERE r.tenant = :t AND d.entity = 'user' AND d.action = 'create'"
            ),
            {"t": tenant_slug},
        ).scalar_one()
        active = conn.execute(
            sa.text("SELECT count(*) FROM app.users WHERE tenant = :t AND is_active"),
            {"t": tenant_slug},
        ).scalar_one()
    assert planned > 0 and active == planned  # fully applied
    assert run_status(engine, tenant_slug) == [("success", None)]


def test_second_ctrl_c_during_the_apply_leaves_and_says_what_state_the_tenant_is_in(
    register, tenant_slug, engine, database_url, tmp_path
):
    register(tenant_slug)
    before = app_snapshot(engine, tenant_slug)
    home = str(tmp_path / "home")
    run = SyncProcess(tenant_slug, home, database_url, SYNC_PIPELINE_TEST_PAUSE=f"apply:{PAUSE}")
    run.wait_for("▶ apply")
    wait_until(lambda: inside(engine, tenant_slug, "apply"), PAUSE, "the apply's pause")
    run.ctrl_c()
    run.wait_for("the apply is committing; waiting")
    run.ctrl_c()
    code, _, err = run.finish()
    assert code == 130, err
    assert f"Ctrl-C again: {tenant_slug}: leaving now, during the apply" in err
    assert "app.* stays as it was before this sync, never half-applied" in err
    # the server notices the closed connection, rolls the apply back and lets its lock go
    wait_until(lambda: not tenant_lock_held(engine, tenant_slug), 30, "the apply's rollback")
    assert app_snapshot(engine, tenant_slug) == before
    assert run_status(engine, tenant_slug) == [("running", None)]  # until the next sync

    again = SyncProcess(tenant_slug, home, database_url)
    code, _, err = again.finish()
    assert code == 0, err
    (left, left_error), last = run_status(engine, tenant_slug)
    assert left == "failed" and "ended before the sync finished" in left_error
    assert last == ("success", None)
