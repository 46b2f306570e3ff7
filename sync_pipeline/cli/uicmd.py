"""`sync-pipeline ui`: the Dagster webserver and daemon on the project's instance.

`dagster dev` shuts its webserver, daemon and code server down on SIGINT only; a SIGTERM (a
service manager, `kill`) ends it alone and leaves them serving, re-parented. So it runs in its
own process group: SIGTERM or SIGINT to this command becomes one SIGINT to `dagster dev`, and
whatever of the group is left after its shutdown is killed.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys

import click

from sync_pipeline.cli.common import console, err_console, fail, handle_errors, prepare
from sync_pipeline.core import config

# The code location by module, so the installed package needs no workspace file of its own.
LOCATION = ["-m", "sync_pipeline.definitions"]
SHUTDOWN_SECONDS = 30  # dagster dev waits up to 10 s per service before killing it


def _stop(dev: subprocess.Popen) -> int:
    """Ask `dagster dev` to shut down (SIGINT), then kill whatever of its group remains."""
    try:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(timeout=SHUTDOWN_SECONDS)
    except subprocess.TimeoutExpired:
        code = -signal.SIGKILL
    try:
        os.killpg(dev.pid, signal.SIGKILL)  # the group is dev's own: start_new_session
    except ProcessLookupError:
        pass
    return code


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback name or address (the UI's only default)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Listen on a non-loopback --host. The UI has no authentication of its own: anyone "
    "who reaches it can launch syncs; put it behind an authenticating proxy "
    "(docs/operations.md).",
)
@handle_errors
def ui_command(host: str, port: int, allow_remote: bool) -> None:
    """Start the Dagster UI (webserver and daemon: schedules and sensors tick), on loopback
    unless --allow-remote."""
    if not is_loopback(host):
        if not allow_remote:
            fail(
                f"--host {host!r} is not a loopback address, and the Dagster UI has no "
                "authentication of its own: anyone who reaches it can launch and delete runs. "
                "Keep the default (127.0.0.1) and reach it through an authenticating proxy or "
                "an SSH tunnel (docs/operations.md), or pass --allow-remote if that is what "
                "you mean"
            )
        err_console.print(
            f"[bold yellow]warning:[/] the UI listens on {host}:{port} without authentication "
            "of its own; anyone who reaches it can launch syncs (docs/operations.md)",
            soft_wrap=True,
        )
    prepare()
    console.print(
        f"Dagster UI on http://{host}:{port} (instance in {config.prepared_dagster_home()})"
    )
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        *LOCATION, "--host", host, "--port", str(port),
    ]  # fmt: skip
    dev = subprocess.Popen(cmd, start_new_session=True)
    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while dev.poll() is None and not stopping:
            try:
                dev.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
    finally:
        code = _stop(dev)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stopping:
        console.print("Dagster UI stopped.")
        raise SystemExit(128 + stopping[0])
    raise SystemExit(code)
