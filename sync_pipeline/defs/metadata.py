"""Materialisation metadata as Dagster takes it: plain values, or Dagster's own values."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

# What an asset puts in one metadata entry (Dagster shows ints and floats as plots over runs).
Value = dg.MetadataValue | str | int | float | None
Metadata = dict[str, Value]


def plain(values: Mapping[str, object]) -> Metadata:
    """Facts from the floors below (which know nothing of Dagster) as metadata: numbers and
    text as they are, anything else as its text."""
    return {
        k: v if v is None or isinstance(v, str | int | float) else str(v) for k, v in values.items()
    }
