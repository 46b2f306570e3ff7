"""The `sync-pipeline` command run as a user runs it: a child process of this interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    drop: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`sync-pipeline ARGS` with this environment plus `env`, less the variables in `drop`."""
    full = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in drop}
    return subprocess.run(
        [sys.executable, "-m", "sync_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=300,
    )


def in_process(database_url: str):
    """`cli(*args, input=...)`: the command run in this process by click's runner, on the
    test database (a fixture's body: conftest.py registers it as `cli`)."""
    from click.testing import CliRunner

    from sync_pipeline.cli import main

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke
