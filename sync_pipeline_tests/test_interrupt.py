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
import time

import pytest
import sqlalchemy as sa

from sync_pipeline_tests.test_crash import snapshot

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
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, f"never saw {text!r}:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    def ctrl_c(self) -> None:
        """SIGINT to the whole process group, as a terminal's Ctrl-C: children get it too."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # stderr is the reader thread's alone
        self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return self.proc.returncode, out, " ".join(" ".join(self.lines).split())


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
    before = snapshot(engine, tenant_slug)
    run = SyncProcess(
        tenant_slug,
        str(tmp_path / "home"),
        database_url,
        SYNC_PIPELINE_TEST_PAUSE=f"{stage}:{PAUSE}",
    )
    run.wait_for(f"▶ {stage}")
    time.sleep(0.5)
    run.ctrl_c()
    code, out, err = run.finish()
    assert code == 130, err
    assert f"Ctrl-C: stopping the sync of {tenant_slug} at the next step (now: {stage})" in err
    assert "before the apply: app.* is unchanged" in err, out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert snapshot(engine, tenant_slug) == before
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
    time.sleep(0.5)
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
    before = snapshot(engine, tenant_slug)
    home = str(tmp_path / "home")
    run = SyncProcess(tenant_slug, home, database_url, SYNC_PIPELINE_TEST_PAUSE=f"apply:{PAUSE}")
    run.wait_for("▶ apply")
    time.sleep(0.5)
    run.ctrl_c()
    run.wait_for("the apply is committing; waiting")
    run.ctrl_c()
    code, _, err = run.finish()
    assert code == 130, err
    assert f"Ctrl-C again: {tenant_slug}: leaving now, during the apply" in err
    assert "app.* stays as it was before this sync, never half-applied" in err
    time.sleep(0.5)  # the server notices the closed connection and rolls the apply back
    assert snapshot(engine, tenant_slug) == before
    assert run_status(engine, tenant_slug) == [("running", None)]  # until the next sync

    again = SyncProcess(tenant_slug, home, database_url)
    code, _, err = again.finish()
    assert code == 0, err
    (left, left_error), last = run_status(engine, tenant_slug)
    assert left == "failed" and "ended before the sync finished" in left_error
    assert last == ("success", None)
