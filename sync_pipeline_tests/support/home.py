"""The project's local state (CA files, Dagster home) for a test session, in a temporary
folder: nothing lands in the working tree (a session-wide, autouse fixture)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator


def sync_home() -> Iterator[str]:
    """Keep the project's local state (CA files, Dagster home) out of the working tree."""
    with tempfile.TemporaryDirectory(prefix="sp-home-") as path:
        old = os.environ.get("SYNC_PIPELINE_HOME")
        os.environ["SYNC_PIPELINE_HOME"] = path
        yield path
        if old is None:
            os.environ.pop("SYNC_PIPELINE_HOME", None)
        else:
            os.environ["SYNC_PIPELINE_HOME"] = old
