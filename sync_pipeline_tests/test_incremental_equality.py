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
from sync_pipeline_tests.support.churn import (
    GROUPS_SQL,
    USERS_SQL,
    Churn,
    planned,
    random_settings,
    snapshot,
)
from sync_pipeline_tests.support.converge import new_run
from sync_pipeline_tests.support.rows import group as group_row
from sync_pipeline_tests.support.rows import make_settings
from sync_pipeline_tests.support.rows import user as user_row


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
    steps, paths = 50, []  # 4 seeds: 200 random steps
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
    # the staging triggers' row counts (migration 017) followed every write
    with engine.connect() as conn:
        for table in ("users", "groups", "group_members", "user_licences", "user_managers"):
            for t in (inc, full):
                kept = conn.execute(
                    sa.text("SELECT coalesce(max(n), 0) FROM sync.staged_rows"
                            " WHERE tenant = :t AND tbl = :tbl"), {"t": t, "tbl": table}
                ).scalar_one()  # fmt: skip
                real = conn.execute(
                    sa.text(f"SELECT count(*) FROM staging.{table} WHERE tenant = :t"), {"t": t}
                ).scalar_one()
                assert kept == real, (table, t)


def test_incremental_manager_chains(engine: sa.Engine, tenant_slug: str) -> None:
    """The manager cases random churn seldom hits, each written to both tenants alike: a cycle
    broken and formed by a member that is not the one cut, a cycle broken by an exclusion,
    a manager deleted under their reports, a long chain re-rooted, and a membership joined
    below a nested group. The incremental path recomputes only the users around a change
    (sql/transform/users.sql, sp_around), so each of these must reach every row it moves."""
    inc, full = f"{tenant_slug}-inc", f"{tenant_slug}-full"
    churn = Churn(random.Random(0), (inc, full))
    ids = [f"m{n:02d}" for n in range(12)]
    edits: list[tuple[str, Any]] = []

    def edit(label: str, fn: Any) -> None:
        edits.append((label, fn))

    def setup(conn: sa.Connection) -> None:
        for uid in ids:
            churn.sql(conn, USERS_SQL, **user_row(uid))
            churn.users.add(uid)
        for gid in ("top", "mid"):
            churn.sql(conn, GROUPS_SQL, **group_row(gid))
            churn.groups.add(gid)
        churn.join(conn, "top", "mid", "group")
        # m00 <- m01 <- m02 <- m00 (a cycle of three, m00 cut); a chain m03..m08 under m02
        for uid, mid in (("m00", "m02"), ("m01", "m00"), ("m02", "m01"), ("m03", "m02"),
                         ("m04", "m03"), ("m05", "m04"), ("m06", "m05"), ("m07", "m06"),
                         ("m08", "m07")):  # fmt: skip
            churn.set_manager(conn, uid, mid)

    # the cycle m00 -> m02 -> m01 -> m00 (manager order) is broken by m01, whose report is
    # m02, not the cut m00: walking up from m01's reports never reaches m00
    edit("cycle broken by a member two steps from the cut",
         lambda c: churn.set_manager(c, "m01", "m09"))  # fmt: skip
    edit("cycle formed again by that member", lambda c: churn.set_manager(c, "m01", "m00"))
    edit(
        "cycle member disabled",
        lambda c: churn.sql(
            c, "UPDATE staging.users SET account_enabled = false WHERE tenant = :t AND id = 'm01'"
        ),
    )
    edit(
        "cycle member enabled again",
        lambda c: churn.sql(
            c, "UPDATE staging.users SET account_enabled = true WHERE tenant = :t AND id = 'm01'"
        ),
    )
    edit("a long cycle formed at the chain's foot", lambda c: churn.set_manager(c, "m02", "m08"))
    edit("a manager deleted under their reports", lambda c: churn.remove_user(c, "m05"))
    edit("the chain re-rooted", lambda c: churn.set_manager(c, "m06", "m10"))
    edit("a member joins the nested group", lambda c: churn.join(c, "mid", "m07", "user"))
    edit("and leaves it", lambda c: churn.leave(c, ("mid", "m07", "user")))

    with engine.begin() as conn:
        setup(conn)
    settings = {"import_managers": True}
    seen: dict[str, Any] = {}
    for label, fn in [("setup", None), *edits]:
        with engine.begin() as conn:
            if fn is not None:
                fn(conn)
            refresh, _ = sync_one(conn, make_settings(inc, **settings), incremental=True,
                                  with_diff=False)  # fmt: skip
            sync_one(conn, make_settings(full, **settings), incremental=False, with_diff=False)
            now = snapshot(conn, inc)
            assert now == snapshot(conn, full), label
            if fn is not None:
                assert refresh.path == "incremental", (label, refresh.full_reason)
            seen[label] = now
    # the edits did what their labels say, so the comparisons above were about something
    manager = {
        label: {u.graph_id: u.manager_graph_id for u in snap[0]} for label, snap in seen.items()
    }
    note = {label: {u.graph_id: u.manager_note for u in snap[0]} for label, snap in seen.items()}
    assert manager["setup"]["m00"] is None and note["setup"]["m00"].startswith("manager_cycle:")
    assert manager["cycle broken by a member two steps from the cut"]["m00"] == "m02"
    assert manager["cycle member disabled"]["m00"] == "m02"
    assert note["a long cycle formed at the chain's foot"]["m02"].startswith("manager_cycle:")
    assert note["a manager deleted under their reports"]["m06"] == "manager_not_found"
    assert ("top", "m07") in seen["a member joins the nested group"][2]
    assert ("top", "m07") not in seen["and leaves it"][2]


def test_a_snapshot_written_outside_the_transform_is_rebuilt(
    engine: sa.Engine, tenant_slug: str
) -> None:
    """The incremental path trusts the rows it does not recompute, so any write to the snapshot
    but the transform's own (migration 017's triggers) makes the next transform a full one,
    which puts the row right; the transform's own writes leave the state trusted."""
    settings = make_settings(tenant_slug)
    with engine.begin() as conn:
        churn = Churn(random.Random(5), (tenant_slug,))
        for uid in ("u001", "u002", "u003", "u004", "u005", "u006"):
            churn.sql(conn, USERS_SQL, **user_row(uid))
        rules.refresh_snapshot(conn, settings)
    with engine.begin() as conn:
        rename = (
            "UPDATE staging.users SET display_name = 'Renamed' WHERE tenant = :t AND id = 'u001'"
        )
        churn.sql(conn, rename)
        _, own = rules.refresh_snapshot(conn, settings)
        assert own.path == "incremental", own.full_reason
    want = "SELECT display_name FROM sync.snapshot_users WHERE tenant = :t AND graph_id = 'u002'"
    with engine.begin() as conn:
        name = conn.execute(sa.text(want), {"t": tenant_slug}).scalar_one()
        edit = "UPDATE sync.snapshot_users SET display_name = 'Edited' WHERE tenant = :t"
        conn.execute(sa.text(edit + " AND graph_id = 'u002'"), {"t": tenant_slug})
    with engine.begin() as conn:
        _, rebuilt = rules.refresh_snapshot(conn, settings)
        assert (rebuilt.path, rebuilt.full_reason) == ("full", "snapshot_changed_outside")
        assert conn.execute(sa.text(want), {"t": tenant_slug}).scalar_one() == name
        _, after = rules.refresh_snapshot(conn, settings)
        assert after.path == "incremental"
