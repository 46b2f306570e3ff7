"""`sync-pipeline ui` stops its webserver, daemon and code server on SIGTERM or SIGINT."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sync_pipeline_tests.support.waiting import wait_until


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(proc.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _living(pids: set[int]) -> list[int]:
    return [p for p in pids if _alive(p)]


def _serving(proc: subprocess.Popen, port: int) -> bool:
    """Whether the webserver on `port` answers; fails when its process has ended."""
    if proc.poll() is not None:
        err = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        raise AssertionError(f"exited with {proc.returncode} before serving\n{err}")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
    except OSError:
        return False
    return True


def _settled(pid: int):
    """A predicate: `pid`'s descendants once they are at least three and the same two polls
    in a row (the webserver and the daemon start their own children after serving)."""
    seen: list[set[int]] = []

    def settled() -> set[int] | None:
        family = _descendants(pid)
        stable = len(family) >= 3 and bool(seen) and seen[-1] == family
        seen.append(family)
        return family if stable else None

    return settled


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_ui_stops_every_child_on_a_signal(signum, tmp_path, database_url):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SYNC_PIPELINE_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}
    ui = subprocess.Popen(
        [sys.executable, "-m", "sync_pipeline.cli", "ui", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # serving: the webserver, the daemon and the code server are up
        wait_until(lambda: _serving(ui, port), 180, "the UI to start", interval=1)
        family = wait_until(_settled(ui.pid), 60, "the UI's processes to settle", interval=1)
        assert len(family) >= 3  # dagster dev, webserver, daemon (and the code server)
        ui.send_signal(signum)
        assert ui.wait(timeout=180) == 128 + signum
        wait_until(lambda: not _living(family), 15, lambda: f"{_living(family)} to exit")
        assert _living(family) == []
    finally:
        if ui.poll() is None:
            ui.kill()


def test_dagster_dev_from_the_repository_root_needs_no_wrapper(tmp_path, server_url):
    from sync_pipeline_tests.support.database import new_database

    # A database of its own: the session's holds every other test's tenants, whose hosts are
    # gone, and the daemon's sensors examining hundreds of them slowed its shutdown past the
    # wait (a known cost, see docs/operations.md); this test is about dagster dev from the root.
    with new_database(server_url, "sp_dev_") as database_url:
        _dagster_dev_from_the_root(tmp_path, database_url)


def _dagster_dev_from_the_root(tmp_path, database_url):
    # No DAGSTER_HOME, no SYNC_PIPELINE_DAGSTER_PG_URL: dagster.yaml in the root is enough.
    # The root's own files, copied: dagster dev keeps its temporary instance in the working
    # directory, which must not be the checkout (tests never write there).
    root = Path(__file__).resolve().parents[1]
    cwd = tmp_path / "root"
    cwd.mkdir()
    for name in ("dagster.yaml", "workspace.yaml", "pyproject.toml"):
        shutil.copy(root / name, cwd / name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DAGSTER_HOME", "SYNC_PIPELINE_DAGSTER_PG_URL")
    }
    env |= {"SYNC_PIPELINE_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}
    env["PYTHONPATH"] = str(root)
    dev = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "--port", str(port)],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: _serving(dev, port), 180, "dagster dev to start", interval=1)
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=180)  # dagster dev stops its children first: slow on a loaded machine
        finally:
            try:
                os.killpg(dev.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
