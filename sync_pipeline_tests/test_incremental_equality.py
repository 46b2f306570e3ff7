"""The incremental transform (rules.refresh_snapshot) equals the full one, row for row.

Random churn sequences (adds, removes, renames, address changes and collisions, enable and
licence flips, moves between groups, nesting changes, group kind changes, manager changes and
cycles, settings changes) are written to the staging of two tenants alike, with plain SQL as
any writer would (the staging triggers record the change set). One tenant's snapshot is
refreshed incrementally, the other's rebuilt in full; after every step the snapshots must
match row for row, and so must the diffs against each tenant's app (every third step, applied
then, so the apps evolve alike). Seeded, so a failure replays.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.load import diff
from sync_pipeline.transform import rules
from sync_pipeline_tests.support.churn import Churn, planned, random_settings, snapshot
from sync_pipeline_tests.support.converge import new_run
from sync_pipeline_tests.support.rows import make_settings


def sync_one(
    conn: sa.Connection, settings: TenantSettings, *, incremental: bool, with_diff: bool
) -> tuple[rules.Refresh, list[Any]]:
    """The transform, then (with_diff) the diff and its apply."""
    _, refresh = rules.refresh_snapshot(conn, settings, incremental=incremental)
    if not with_diff:
        return refresh, []
    run_id = new_run(conn, settings.slug)
    diff.compute_diff(conn, settings.slug, run_id, settings)
    rows = planned(conn, settings.slug, run_id)
    diff.apply_diff(conn, settings.slug, run_id)
    return refresh, rows


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_incremental_equals_full(engine: sa.Engine, tenant_slug: str, seed: int) -> None:
    rng = random.Random(seed)
    inc, full = f"{tenant_slug}-inc", f"{tenant_slug}-full"
    churn = Churn(rng, (inc, full))
    steps, paths = 60, []
    with engine.begin() as conn:
        for _ in range(24):
            churn.add_user(conn)
        for _ in range(6):
            churn.add_group(conn)
        for _ in range(30):
            churn.step(conn)
    kw: dict[str, Any] = {}
    for step in range(steps):
        if step % 12 == 11:  # a settings change now and then: the full path, by design
            kw = random_settings(rng, inc, sorted(churn.groups))
        with engine.begin() as conn:
            for _ in range(rng.choice((1, 1, 2, 3))):
                churn.step(conn)
        # a scope group must exist for the settings to pass (tenants.check_before_run)
        if not set(kw.get("scope_group_ids", [])) <= churn.groups:
            kw = kw | {"user_scope": "all", "scope_group_ids": []}
        with engine.begin() as conn:
            # the diff (a full computation on both sides) every third step: CI time
            with_diff = step % 3 == 2 or step == steps - 1
            refresh, inc_diff = sync_one(
                conn, make_settings(inc, **kw), incremental=True, with_diff=with_diff
            )
            _, full_diff = sync_one(
                conn, make_settings(full, **kw), incremental=False, with_diff=with_diff
            )
            where = f"seed {seed} step {step} ({refresh.path} {refresh.full_reason})"
            assert snapshot(conn, inc) == snapshot(conn, full), where
            assert inc_diff == full_diff, where
        paths.append(refresh.path)
    # the comparison means something only if the incremental path actually ran
    assert paths.count("incremental") >= steps // 2, paths
