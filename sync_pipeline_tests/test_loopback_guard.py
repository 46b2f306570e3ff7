"""The guard the topology test runs its processes with (support/loopback.py) refuses and
records what is not loopback, and lets loopback through."""

from __future__ import annotations

import os
import subprocess
import sys

from sync_pipeline_tests.support import loopback

PROBE = """
import socket, requests
for attempt in (
    lambda: requests.get("https://graph.microsoft.com/v1.0/", timeout=5),
    lambda: socket.socket().connect(("10.255.255.1", 443)),
):
    try:
        attempt()
    except OSError as exc:  # requests' ConnectionError is one
        print("refused:", exc)
with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    socket.create_connection(server.getsockname(), timeout=5).close()
print("loopback ok")
"""


def test_the_guard_refuses_and_records_all_but_loopback(tmp_path) -> None:
    guard, log = loopback.install_guard(tmp_path / "guard")
    env = os.environ | {"PYTHONPATH": str(guard), loopback.GUARD_LOG_ENV: str(log)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused:") == 2 and "loopback ok" in done.stdout
    refused = loopback.refused(log)
    assert len(refused) == 2
    assert "lookup 'graph.microsoft.com'" in refused[0]
    assert "connect ('10.255.255.1', 443)" in refused[1]


def test_loopback_urls() -> None:
    loopback.assert_loopback("https://127.0.0.1:8443/graph/notifications")
    loopback.assert_loopback("postgresql://postgres@[::1]:5432/postgres")
    try:
        loopback.assert_loopback("https://notify.example.com/graph")
    except AssertionError:
        pass
    else:
        raise AssertionError("a public host passed as loopback")
