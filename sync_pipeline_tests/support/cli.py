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
