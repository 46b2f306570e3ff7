"""Staged users and groups reconciled with Graph's `$count` before the read commits."""

from __future__ import annotations

import math

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.extract.links import GROUPS, USERS
from sync_pipeline.extract.result import Extraction
from sync_pipeline.extract.staging import GraphDataError
from sync_pipeline.graph.client import GraphClient


def count_tolerance(settings: TenantSettings, count: int) -> int:
    """How far staged objects may be from Graph's `$count` (docs/extraction.md): the larger of
    `count_tolerance_objects` and `count_tolerance_percent` of the count."""
    share = math.ceil(count * settings.count_tolerance_percent / 100)
    return max(settings.count_tolerance_objects, share)


def reconcile(
    client: GraphClient,
    conn: sa.Connection,
    tenant: str,
    result: Extraction,
    before: dict[str, int | None],
) -> None:
    """Staged users and groups must match Graph's `$count`, taken before and after the read,
    within the tenant's tolerance (the count is eventually consistent), or nothing is kept.

    Objects created or deleted during the read move the count; staged within the two counts
    is exact. Beyond them by more than the tolerance, pages were lost. Where the tenant does
    not support `$count` (Azure AD B2C), completeness rests on the paging protocol and the
    drift and safety guards: said in the metadata, never a failure."""
    staged = conn.execute(db.q("extract/staged_counts"), {"t": tenant}).mappings().one()
    result.staged = {k: int(v) for k, v in staged.items()}
    for entity in (USERS, GROUPS):
        after = client.count(f"/{entity}")
        first = before.get(entity)
        if after is None or first is None:
            result.count_check[entity] = "unsupported"
            continue
        result.graph_counts[entity] = after
        low, high = min(first, after), max(first, after)
        have = result.staged[entity]
        off = low - have if have < low else have - high if have > high else 0
        tolerance = count_tolerance(client.settings, high)
        result.count_offset[entity] = have - after
        result.count_tolerance[entity] = tolerance
        result.count_check[entity] = "exact" if off == 0 else "within_tolerance"
        if off > tolerance:
            between = f"{low}" if low == high else f"{low} before and {high} after the read"
            raise GraphDataError(
                f"tenant {tenant}: staged {have} {entity} but Graph's $count says {between} "
                f"({result.mode.get(entity, 'full')} read): {off} more than index lag "
                f"explains (tolerance {tolerance}: count_tolerance_objects / "
                "count_tolerance_percent); pages were lost, so nothing was kept. Run the sync "
                f"again; if it persists, run `sync-pipeline sync {tenant} --full`"
            )
