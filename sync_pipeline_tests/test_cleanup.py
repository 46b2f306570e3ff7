"""The test suite cleans up after itself: no embedded Postgres left running, nothing written
into the checkout. Checked by running a small pytest session in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
INNER = "SP_TEST_INNER_SESSION"


def _processes_naming(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True
    ).stdout


@pytest.mark.skipif(not os.environ.get(INNER), reason="run by the test below, in a subprocess")
def test_inner_session_uses_the_database(engine, sync_home):
    Path(os.environ[INNER]).write_text(sync_home)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


@pytest.mark.skipif(bool(os.environ.get(INNER)), reason="the inner session itself")
def test_a_session_on_the_embedded_server_stops_it_and_leaves_the_checkout_alone(tmp_path):
    before = _git_status()
    report = tmp_path / "home.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SYNC_PIPELINE_HOME")}
    env |= {INNER: str(report), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"{Path(__file__).name}::"
         "test_inner_session_uses_the_database"],
        cwd=ROOT / "sync_pipeline_tests", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    home = report.read_text()
    assert home and "pgdata" not in done.stdout
    assert _processes_naming(f"{home}/pgdata") == []  # the embedded server was stopped
    assert _git_status() == before  # no .pytest_cache, no state folder in the checkout
