"""The long-running processes of a topology test: each in its own process group, logging to a
file, stopped by SIGTERM to the group; waiting on them with a deadline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    what: str, check: Callable[[], object], timeout: float, procs: Iterable[Service] = ()
) -> object:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline, or
    as soon as one of the processes has exited (with the end of its log)."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            assert proc.poll() is None, f"{proc.name} exited ({proc.returncode}):\n{proc.tail()}"
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


class Service:
    """One long-running process of the topology, in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log = cwd.parent / f"{name}.log"  # beside the empty working folder, not in it
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM to the whole group (run workers included), SIGKILL after 30 s."""
        for signum, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            try:  # the leader is gone; children of the group may not be
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
