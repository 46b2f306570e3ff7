"""`sync-pipeline ui` stops its webserver, daemon and code server on SIGTERM or SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


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
        deadline = time.monotonic() + 180
        while True:  # serving: the webserver, the daemon and the code server are up
            assert ui.poll() is None and time.monotonic() < deadline, "the UI did not start"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        time.sleep(3)
        family = _descendants(ui.pid)
        assert len(family) >= 3  # dagster dev, webserver, daemon (and the code server)
        ui.send_signal(signum)
        assert ui.wait(timeout=60) == 128 + signum
        deadline = time.monotonic() + 15
        while [p for p in family if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [p for p in family if _alive(p)] == []
    finally:
        if ui.poll() is None:
            ui.kill()


def test_dagster_dev_from_the_repository_root_needs_no_wrapper(tmp_path, database_url):
    # No DAGSTER_HOME, no SYNC_PIPELINE_DAGSTER_PG_URL: dagster.yaml in the root is enough.
    root = Path(__file__).resolve().parents[1]
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
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert dev.poll() is None, dev.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "dagster dev did not start"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=60)
        finally:
            try:
                os.killpg(dev.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
