"""The incremental diff (load/diff.compute_diff_path) equals the whole one, row for row.

One tenant, changed at random on both sides: its staging by the churn of the incremental
transform's test (users, groups, memberships, nesting, managers, address collisions,
settings), and its app.* by hand, as the app or a person in it would (fields and addresses
edited, users deactivated, detached or made by hand at a synced address, managers changed,
memberships added and removed, groups renamed, removed or re-pointed). After every step the
diff is computed both ways over the same state, and the rows must match, ids included. Then
one of them is applied (most steps), or none (a test sync), so the change set is consumed
by applies as in production, and app edits made meanwhile stay in it; an apply that an
app edit makes fail (an address taken by hand) rolls back and consumes nothing. Seeded: a
failure replays.
"""

from __future__ import annotations

import collections
import random
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.load import diff
from sync_pipeline.transform import rules
from sync_pipeline_tests.support.churn import Churn, random_settings
from sync_pipeline_tests.support.converge import new_run
from sync_pipeline_tests.support.rows import group, make_settings, stage, user


def rows(conn: sa.Connection, tenant: str, run_id: int) -> list[Any]:
    return conn.execute(
        sa.text(
            "SELECT entity, action, key, label, app_id, before::text, after::text,"
            " group_app_id, group_external_id, user_app_id, user_external_id FROM sync.diffs"
            " WHERE tenant = :t AND run_id = :r ORDER BY entity, action, key"
        ),
        {"t": tenant, "r": run_id},
    ).all()


# The admin's fix for a sync blocked by an address held in the app by another row.
UNBLOCK = (
    "UPDATE app.users a SET is_active = false WHERE a.tenant = :t AND a.is_active"
    " AND lower(a.email) IN (SELECT lower(s.email) FROM sync.snapshot_users s"
    " WHERE s.tenant = :t AND s.included AND s.graph_id IS DISTINCT FROM a.external_id)"
)


class AppEdits:
    """Random edits to one tenant's app.* rows, each in a savepoint: an edit the app's own
    constraints refuse (an address taken, say) is simply not made."""

    def __init__(self, rng: random.Random, tenant: str) -> None:
        self.rng, self.tenant, self.n = rng, tenant, 0

    def _ids(self, conn: sa.Connection, sql: str) -> list[Any]:
        return list(conn.execute(sa.text(sql), {"t": self.tenant}).scalars())

    def edit(self, conn: sa.Connection) -> None:
        r, t = self.rng, self.tenant
        users = self._ids(conn, "SELECT id FROM app.users WHERE tenant = :t ORDER BY id")
        groups = self._ids(conn, "SELECT id FROM app.groups WHERE tenant = :t ORDER BY id")
        emails = self._ids(
            conn, "SELECT email FROM sync.snapshot_users WHERE tenant = :t AND email IS NOT NULL"
        )
        self.n += 1
        move = r.choices(
            ("field", "email", "deactivate", "reactivate", "detach", "manual_user", "manager",
             "member_add", "member_remove", "group_rename", "group_remove", "group_detach",
             "app_group"),
            weights=(2, 2, 2, 1, 2, 2, 3, 3, 3, 1, 1, 2, 1),
        )[0]  # fmt: skip
        if not users and move not in ("manual_user", "app_group"):
            move = "manual_user"
        u = r.choice(users) if users else None
        g = r.choice(groups) if groups else None
        statements = {
            "field": ("UPDATE app.users SET job_title = :v WHERE id = :u", {"v": f"T{self.n}"}),
            "email": (
                "UPDATE app.users SET email = :v WHERE id = :u",
                {"v": r.choice(emails) if emails and r.random() < 0.15 else f"e{self.n}@x.org"},
            ),
            "deactivate": (
                "UPDATE app.users SET is_active = false, deactivated_at = now() WHERE id = :u",
                {},
            ),
            "reactivate": ("UPDATE app.users SET is_active = true WHERE id = :u", {}),
            "detach": ("UPDATE app.users SET external_id = NULL WHERE id = :u", {}),
            "manual_user": (
                "INSERT INTO app.users (tenant, email, source) VALUES (:t, :v, 'manual')",
                {"v": r.choice(emails) if emails else f"m{self.n}@x.org"},
            ),
            "manager": (
                "UPDATE app.users SET manager_id = :m WHERE id = :u",
                {"m": r.choice(users) if users and r.random() < 0.7 else None},
            ),
            "member_add": (
                "INSERT INTO app.group_members (tenant, group_id, user_id, source)"
                " VALUES (:t, :g, :u, :s) ON CONFLICT DO NOTHING",
                {"s": r.choice(("manual", "m365"))},
            ),
            "member_remove": (
                "DELETE FROM app.group_members WHERE tenant = :t AND (group_id, user_id) IN"
                " (SELECT group_id, user_id FROM app.group_members WHERE tenant = :t"
                " AND user_id = :u LIMIT 1)",
                {},
            ),
            "group_rename": ("UPDATE app.groups SET name = :v WHERE id = :g", {"v": "Renamed"}),
            "group_remove": ("UPDATE app.groups SET removed_at = now() WHERE id = :g", {}),
            "group_detach": ("UPDATE app.groups SET external_id = NULL WHERE id = :g", {}),
            "app_group": (
                "INSERT INTO app.groups (tenant, name, source) VALUES (:t, :v, 'app')",
                {"v": f"App group {self.n}"},
            ),
        }
        sql, params = statements[move]
        if (":g" in sql and g is None) or (":u" in sql and u is None):
            return
        try:
            with conn.begin_nested():
                conn.execute(sa.text(sql), {"t": t, "u": u, "g": g} | params)
        except sa.exc.IntegrityError:
            pass  # the app's constraints said no (an address in use, say)


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_incremental_diff_equals_whole(
    engine: sa.Engine, tenant_slug: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a small tenant: the share past which the whole diff is cheaper would hide the
    # incremental path's mistakes on the wide changes (an app group re-pointed, say)
    monkeypatch.setattr(diff, "INCREMENTAL_MAX_SHARE", 2.0)
    rng = random.Random(seed)
    tenant = f"{tenant_slug}-diff"
    churn, app = Churn(rng, (tenant,)), AppEdits(rng, tenant)
    steps, paths, considered, failed_applies = 50, [], [], 0  # 4 seeds: 200 steps
    with engine.begin() as conn:
        for _ in range(24):
            churn.add_user(conn)
        for _ in range(6):
            churn.add_group(conn)
        for _ in range(30):
            churn.step(conn)
        for _ in range(40):  # memberships enough for the group edits to matter
            churn.join(
                conn, rng.choice(sorted(churn.groups)), rng.choice(sorted(churn.users)), "user"
            )
    kw: dict[str, Any] = {"import_managers": True}
    for step in range(steps):
        if step % 15 == 14:  # now and then a settings change
            kw = random_settings(rng, tenant, sorted(churn.groups))
        with engine.begin() as conn:
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                churn.step(conn)
        with engine.begin() as conn:
            for _ in range(rng.choice((0, 0, 1, 2))):
                app.edit(conn)
        if not set(kw.get("scope_group_ids", [])) <= churn.groups:
            kw = kw | {"user_scope": "all", "scope_group_ids": []}
        settings = make_settings(tenant, **kw)
        with engine.begin() as conn:
            rules.refresh_snapshot(conn, settings)
            # both over the same state; the one computed last is applied (its change set)
            order = [False, True] if rng.random() < 0.5 else [True, False]
            found: dict[bool, list[Any]] = {}
            for incremental in order:
                run_id = new_run(conn, tenant)
                # now and then a weekly verification: the incremental diff, then the whole
                # one over the same run, compared (it must always match)
                verify = incremental and step % 5 == 4
                _, path = diff.compute_diff_path(
                    conn, tenant, run_id, settings, incremental=incremental, verify=verify
                )
                assert path.verified != "mismatch", (step, path.mismatches)
                found[incremental] = rows(conn, tenant, run_id)
                if incremental:
                    paths.append(path.path if not path.full_reason else path.full_reason)
                    considered.append(path.users_considered)
            where = f"seed {seed} step {step}: {paths[-1]}"
            assert found[True] == found[False], where
            if rng.random() < 0.8:  # else a test sync: nothing applied, nothing consumed
                try:
                    with conn.begin_nested():
                        diff.apply_diff(conn, tenant, run_id)
                except sa.exc.IntegrityError:
                    # an app edit collides with the sync (an address taken by hand): the
                    # apply fails whole, as in a run, and consumes nothing; the admin then
                    # deactivates the app's row in the way (an app edit like any other)
                    failed_applies += 1
                    conn.execute(sa.text(UNBLOCK), {"t": tenant})
    # the comparison means something only if the incremental path actually ran, on few users
    assert paths.count("incremental") >= steps // 2, collections.Counter(paths)
    total = len(churn.users)
    assert sorted(considered)[len(considered) // 2] < total, (considered, total)
    assert failed_applies < steps // 4, failed_applies


@pytest.mark.parametrize("edit", ["manager_detached", "group_detached"])
def test_hand_edit_reaches_other_users(
    engine: sa.Engine, tenant_slug: str, edit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """App edits whose effect is on other users' rows: a manager's row detached (its reports'
    manager rows), a group's row detached (its members' memberships). The incremental diff
    finds them, looking at a few users of many."""
    monkeypatch.setattr(diff, "INCREMENTAL_MAX_SHARE", 2.0)
    t = f"{tenant_slug}-hand"
    settings = make_settings(t, import_managers=True)
    people = [user(f"u{i:02d}") for i in range(30)]
    with engine.begin() as conn:
        members, managers = {"g1": ["u01", "u02", "u03"]}, {"u02": "u01", "u03": "u01"}
        stage(conn, t, users=people, groups=[group("g1")], members=members, managers=managers)
        rules.refresh_snapshot(conn, settings)
        run_id = new_run(conn, t)
        diff.compute_diff_path(conn, t, run_id, settings)
        diff.apply_diff(conn, t, run_id)
    with engine.begin() as conn:
        p = {"t": t}
        if edit == "manager_detached":
            detach = (
                "UPDATE app.users SET external_id = NULL, email = 'x@x.org', is_active = false"
                " WHERE tenant = :t AND external_id = 'u01'"
            )
            conn.execute(sa.text(detach), p)
        else:
            conn.execute(sa.text("UPDATE app.groups SET external_id = NULL WHERE tenant = :t"), p)
    with engine.begin() as conn:
        rules.refresh_snapshot(conn, settings)
        found, paths = {}, {}
        for incremental in (False, True):
            run_id = new_run(conn, t)
            _, paths[incremental] = diff.compute_diff_path(
                conn, t, run_id, settings, incremental=incremental
            )
            found[incremental] = rows(conn, t, run_id)
    assert paths[True].path == "incremental", paths[True]
    assert paths[True].users_considered < 10, paths[True]
    assert found[True] == found[False]
    actions = {(r.entity, r.action) for r in found[True]}
    expected = {
        "manager_detached": {("user", "create"), ("manager", "set")},
        "group_detached": {("group", "create"), ("membership", "add")},
    }[edit]
    assert expected <= actions, actions


def test_weekly_verification_compares_the_incremental_diff_with_a_whole_one(
    engine: sa.Engine, tenant_slug: str
) -> None:
    """An app row changed behind the change set's back (triggers off: a restore, a bulk load
    with triggers disabled) is missed by the incremental diff; the whole verification finds
    it, keeps the whole diff and makes the next diff whole."""
    t = f"{tenant_slug}-verify"
    settings = make_settings(t)
    with engine.begin() as conn:
        stage(conn, t, users=[user(f"u{i:02d}") for i in range(20)])
        rules.refresh_snapshot(conn, settings)
        run_id = new_run(conn, t)
        diff.compute_diff_path(conn, t, run_id, settings)
        diff.apply_diff(conn, t, run_id)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE app.users SET job_title = 'Set by hand' WHERE tenant = :t"
                             " AND external_id = 'u01'"), {"t": t})  # fmt: skip
        run_id = new_run(conn, t)
        _, clean = diff.compute_diff_path(conn, t, run_id, settings, verify=True)
        assert (clean.path, clean.verified, clean.users_considered) == ("incremental", "match", 1)
        diff.apply_diff(conn, t, run_id)
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("UPDATE app.users SET department = 'Hidden' WHERE tenant = :t"
                             " AND external_id = 'u02'"), {"t": t})  # fmt: skip
    with engine.begin() as conn:
        run_id = new_run(conn, t)
        counts, daily = diff.compute_diff_path(conn, t, run_id, settings)
        assert daily.path == "incremental" and counts["user_update"] == 0  # unseen daily
        _, found = diff.compute_diff_path(conn, t, run_id, settings, verify=True)
        assert found.verified == "mismatch" and found.mismatches == (
            ("user update", "u02", "whole"),
        )
        assert [r.key for r in rows(conn, t, run_id)] == ["u02"]  # the whole diff is kept
        _, after = diff.compute_diff_path(conn, t, new_run(conn, t), settings)
        assert (after.path, after.full_reason) == ("full", "first_diff")
