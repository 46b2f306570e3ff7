"""`sync-pipeline ui`: the Dagster webserver and daemon on the project's instance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from sync_pipeline.cli.common import console, handle_errors, prepare

WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535))
@handle_errors
def ui_command(host: str, port: int) -> None:
    """Start the Dagster UI (webserver and daemon: schedules and sensors tick)."""
    prepare()
    console.print(f"Dagster UI on http://{host}:{port} (instance in {os.environ['DAGSTER_HOME']})")
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(WORKSPACE), "--host", host, "--port", str(port),
    ]  # fmt: skip
    raise SystemExit(subprocess.call(cmd))
