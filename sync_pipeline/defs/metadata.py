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


def verification_failure(
    tenant: str,
    found: str,
    mismatches: tuple[tuple[str, str, str], ...],
    count: int,
    aftermath: str,
    metadata: Mapping[str, object],
) -> dg.Failure:
    """The weekly verification found the incremental path and a whole one disagreeing on
    `count` rows (`mismatches`: the first (what, key, side) of them): the run stops before the
    apply, naming them; `aftermath` says what was kept and what the next sync does."""
    shown = "; ".join(f"{what} {key} (only in the {side} result)" for what, key, side in mismatches)
    return dg.Failure(
        f"tenant {tenant}: the weekly verification found {count} {found}: {shown}. "
        f"{aftermath} Nothing was applied. Please report this as a bug in sync-pipeline "
        "with these rows.",
        allow_retries=False,
        metadata=plain(metadata),
    )
