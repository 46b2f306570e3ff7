"""The audit (sync.changes), `history` and `undo`, against real Postgres.

"Undo restores the previous app.* exactly" means, here: every column of every app.users,
app.groups and app.group_members row of the tenant that existed before the sync holds the
same value after the undo as before the sync — including deactivated_at, removed_at,
manager_id, external_id and source — except `updated_at`, which records that the row was
written (by the sync, then by the undo) and is only checked to have moved forward. Rows the
sync created stay (users are never deleted): such users are inactive with deactivated_at set
and no memberships; such groups have removed_at set and no memberships.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipeline.audit import changes as audit
from sync_pipeline.core import db
from sync_pipeline.load import diff
from sync_pipeline.registry import tenants
from sync_pipeline.transform import rules
from sync_pipeline_tests.support.converge import (
    BASE,
    E,
    add_app_group,
    add_manual_membership,
    add_manual_user,
    new_run,
)
from sync_pipeline_tests.support.rows import group, make_settings, stage, user

KW = {"import_managers": True, "max_deactivation_percent": 100, "max_deactivations": 100}

# rename a group, a user; disable bob, delete cat, add dan; move ann; new managers; drop EMEA
STEP = {
    "users": [
        user("ann", display_name="Ann B", job_title="CEO"),
        user("bob", enabled=False),
        user("dan"),
        user("eve"),
    ],
    "groups": [group("sales", name="Sales EU"), group("ops", name="Ops")],
    "members": {"sales": ["dan", "eve"], "ops": ["ann", "dan"]},
    "managers": {"dan": "eve", "ann": "dan"},
}


def sync(engine: sa.Engine, tenant: str, staged: dict[str, Any], **kw: Any) -> int:
    """One whole sync (stage, snapshot, diff, apply); returns its sync run id."""
    settings = make_settings(tenant, **(KW | kw))
    with engine.begin() as conn, db.tenant_lock(conn, tenant):
        stage(conn, tenant, **staged)
        rules.build_snapshot(conn, settings)
        run_id = new_run(conn, tenant)
        diff.compute_diff(conn, tenant, run_id, settings)
        diff.apply_diff(conn, tenant, run_id)
        conn.execute(
            sa.text("UPDATE sync.runs SET status = 'success' WHERE id = :r"), {"r": run_id}
        )
    return run_id


def undo(engine: sa.Engine, tenant: str, run_id: int) -> tuple[int, dict[str, int]]:
    with engine.begin() as conn:
        return audit.undo(conn, tenant, run_id)


def rows(engine: sa.Engine, tenant: str) -> dict[str, dict]:
    """Every column of the tenant's app rows (by id), updated_at apart."""
    out: dict[str, dict] = {}
    with engine.connect() as conn:
        for table, key in (
            ("users", "id"),
            ("groups", "id"),
            ("group_members", "group_id, user_id"),
        ):
            found = conn.execute(
                sa.text(f"SELECT * FROM app.{table} WHERE tenant = :t ORDER BY {key}"),
                {"t": tenant},
            ).mappings()
            out[table] = {
                (r["id"] if table != "group_members" else (r["group_id"], r["user_id"])): {
                    k: v for k, v in r.items() if k != "updated_at"
                }
                for r in found
            }
    return out


def changes(engine: sa.Engine, tenant: str, run_id: int) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT * FROM sync.changes WHERE tenant = :t AND run_id = :r ORDER BY id"),
            {"t": tenant, "r": run_id},
        ).all()


def user_ids(engine: sa.Engine, tenant: str) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.text("SELECT email, id FROM app.users WHERE tenant = :t"), {"t": tenant}
            ).all()
        )


def assert_undone(before: dict, after: dict) -> None:
    """after (post-undo) equals before (pre-sync) exactly, rows the sync created apart."""
    for table in ("users", "groups"):
        assert {k: after[table][k] for k in before[table]} == before[table], table
    assert after["group_members"] == before["group_members"]
    for new in set(after["users"]) - set(before["users"]):
        row = after["users"][new]
        assert row["is_active"] is False and row["deactivated_at"] is not None, row
    for new in set(after["groups"]) - set(before["groups"]):
        assert after["groups"][new]["removed_at"] is not None


def test_every_applied_change_is_recorded(engine, tenant_slug):
    manual = add_manual_user(engine, tenant_slug, "ANN@example.com")
    first = sync(engine, tenant_slug, BASE)
    recorded = changes(engine, tenant_slug, first)
    ids = user_ids(engine, tenant_slug)
    by = {(c.entity, c.action, c.key): c for c in recorded}
    assert sorted({(c.entity, c.action) for c in recorded}) == [
        ("group", "create"),
        ("manager", "set"),
        ("membership", "add"),
        ("user", "adopt"),
        ("user", "create"),
    ]
    adopt = by["user", "adopt", "ann"]
    assert adopt.user_id == manual
    assert adopt.before == {
        "email": "ANN@example.com",
        "display_name": "Manual",
        "first_name": None,
        "last_name": None,
        "external_id": None,
        "source": "manual",
    }
    assert adopt.after["external_id"] == "ann" and adopt.after["source"] == "m365"
    created = by["user", "create", "bob"]
    assert created.user_id == ids[E("bob")] and created.before is None
    assert created.after["email"] == E("bob")
    boss = by["manager", "set", "bob"]
    assert boss.before["manager_id"] is None and boss.after["manager_id"] == manual
    with engine.connect() as conn:
        members = set(
            conn.execute(
                sa.text("SELECT group_id, user_id FROM app.group_members WHERE tenant = :t"),
                {"t": tenant_slug},
            ).all()
        )
        sales = conn.execute(
            sa.text("SELECT id FROM app.groups WHERE tenant = :t AND external_id = 'sales'"),
            {"t": tenant_slug},
        ).scalar_one()
    assert {(c.group_id, c.user_id) for c in recorded if c.entity == "membership"} == members
    assert by["group", "create", "sales"].group_id == sales

    second = sync(engine, tenant_slug, STEP)
    recorded = changes(engine, tenant_slug, second)
    with engine.connect() as conn:
        planned = dict(
            conn.execute(
                sa.text(
                    "SELECT entity || '_' || action, count(*) FROM sync.diffs WHERE run_id = :r"
                    " GROUP BY 1"
                ),
                {"r": second},
            ).all()
        )
    got: dict[str, int] = {}
    for c in recorded:
        got[f"{c.entity}_{c.action}"] = got.get(f"{c.entity}_{c.action}", 0) + 1
    assert got == planned
    by = {(c.entity, c.action, c.key): c for c in recorded}
    update = by["user", "update", "ann"]
    assert (update.before, update.after) == (
        {"display_name": "Ann", "job_title": None},
        {"display_name": "Ann B", "job_title": "CEO"},
    )
    gone = by["user", "deactivate", "cat"]
    assert gone.before == {"is_active": True, "deactivated_at": None}
    assert gone.after["is_active"] is False and gone.after["deactivated_at"]
    removed = by["group", "remove", "emea"]
    assert removed.before == {"removed_at": None} and removed.after["removed_at"]
    assert by["group", "rename", "sales"].before == {"name": "Sales"}
    left = [c for c in recorded if (c.entity, c.action) == ("membership", "remove")]
    assert left and all(c.before["source"] == "m365" and c.after is None for c in left)


def test_nothing_recorded_when_the_apply_fails(engine, tenant_slug):
    settings = make_settings(tenant_slug, **KW)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        stage(conn, tenant_slug, **BASE)
        rules.build_snapshot(conn, settings)
        run_id = new_run(conn, tenant_slug)
        diff.compute_diff(conn, tenant_slug, run_id, settings)
        # a person creates an active user with bob's address meanwhile: the create fails
        conn.execute(
            sa.text("INSERT INTO app.users (tenant, email) VALUES (:t, :e)"),
            {"t": tenant_slug, "e": E("bob")},
        )
        diff.apply_diff(conn, tenant_slug, run_id)
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM sync.changes WHERE tenant = :t"), {"t": tenant_slug}
        ).scalar_one()
    assert n == 0


def test_undo_restores_the_previous_app_exactly(engine, tenant_slug):
    add_manual_user(engine, tenant_slug, "helpdesk@example.com")
    add_app_group(engine, tenant_slug, "Champions")
    sync(engine, tenant_slug, BASE)
    add_manual_membership(engine, tenant_slug, "Champions", E("bob"))
    before = rows(engine, tenant_slug)

    second = sync(engine, tenant_slug, STEP)
    applied = rows(engine, tenant_slug)
    assert applied != before
    undo_id, counts = undo(engine, tenant_slug, second)
    after = rows(engine, tenant_slug)
    assert_undone(before, after)
    assert counts["user_deactivate"] == 2  # dan and eve, created by the sync
    assert counts["user_revert"] >= 3  # ann's fields and manager, bob and cat reactivated
    assert counts["group_remove"] == 1  # ops
    with engine.connect() as conn:
        run = conn.execute(
            sa.text("SELECT undo_of, status FROM sync.runs WHERE id = :r"), {"r": undo_id}
        ).one()
        moved = conn.execute(
            sa.text(
                "SELECT count(*) FROM app.users WHERE tenant = :t AND updated_at <= created_at"
                " AND external_id = 'ann'"
            ),
            {"t": tenant_slug},
        ).scalar_one()
    assert tuple(run) == (second, "success") and moved == 0

    # the undo is audited and can be undone: the sync's result comes back, exactly
    assert {c.run_id for c in changes(engine, tenant_slug, undo_id)} == {undo_id}
    undo(engine, tenant_slug, undo_id)
    assert rows(engine, tenant_slug) == applied

    # the sync run counts as undone only while its undo stands: now it is live again
    undo(engine, tenant_slug, second)
    assert_undone(before, rows(engine, tenant_slug))
    with pytest.raises(audit.UndoRefused, match="undone already"):
        undo(engine, tenant_slug, second)


def test_undo_of_a_first_load(engine, tenant_slug):
    manual = add_manual_user(engine, tenant_slug, "ann@example.com")
    before = rows(engine, tenant_slug)
    first = sync(engine, tenant_slug, BASE)
    undo(engine, tenant_slug, first)
    after = rows(engine, tenant_slug)
    assert_undone(before, after)
    assert after["users"][manual]["source"] == "manual"
    assert after["users"][manual]["external_id"] is None
    assert after["users"][manual]["is_active"] is True
    assert after["group_members"] == {}
    # a later sync brings the same rows back (reactivated, not duplicated)
    again = sync(engine, tenant_slug, BASE)
    assert len(rows(engine, tenant_slug)["users"]) == len(after["users"])
    assert {c.action for c in changes(engine, tenant_slug, again) if c.entity == "user"} == {
        "adopt",
        "reactivate",
    }


def test_undo_refused_when_a_later_sync_changed_the_rows(engine, tenant_slug):
    sync(engine, tenant_slug, BASE)
    after_first = rows(engine, tenant_slug)
    second = sync(
        engine, tenant_slug, BASE | {"users": [user("ann", display_name="A2"), *BASE["users"][1:]]}
    )
    third = sync(
        engine, tenant_slug, BASE | {"users": [user("ann", display_name="A3"), *BASE["users"][1:]]}
    )
    with pytest.raises(audit.UndoRefused) as refused:
        undo(engine, tenant_slug, second)
    message = str(refused.value)
    assert f"user {E('ann')} (changed again by run {third})" in message
    assert f"run {third}" in message and "newest first" in message
    assert [c.label for c in refused.value.conflicts] == [E("ann")]
    assert rows(engine, tenant_slug)["users"] != after_first  # nothing changed

    # undoing the later run first makes the earlier one undoable
    undo(engine, tenant_slug, third)
    undo(engine, tenant_slug, second)
    assert_undone(after_first, rows(engine, tenant_slug))


def test_plan_undo_bad_input(engine, tenant_slug):
    with engine.begin() as conn:
        dry = conn.execute(
            sa.text("INSERT INTO sync.runs (tenant, dry_run) VALUES (:t, true) RETURNING id"),
            {"t": tenant_slug},
        ).scalar_one()
    with engine.connect() as conn:
        with pytest.raises(audit.UnknownRunError, match="no run 999999999"):
            audit.plan_undo(conn, tenant_slug, 999_999_999)
        with pytest.raises(audit.UnknownRunError, match="test sync"):
            audit.plan_undo(conn, tenant_slug, dry)
        with pytest.raises(audit.UnknownRunError, match=f"no run {dry}"):
            audit.plan_undo(conn, "another-tenant", dry)


@pytest.fixture
def cli(engine, monkeypatch):
    """Invoke the CLI in-process; the environment it prepares is put back afterwards."""
    for name in ("DAGSTER_HOME", "SYNC_PIPELINE_DAGSTER_PG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    from sync_pipeline.cli import common

    monkeypatch.setattr(common.console, "width", 300)  # whole table rows, for the asserts
    from sync_pipeline.cli import main

    def run(*args: str, **kw: Any):
        return CliRunner().invoke(main, list(args), catch_exceptions=False, **kw)

    return run


def test_history_and_undo_commands(engine, tenant_slug, cli):
    with engine.begin() as conn:
        tenants.save(conn, make_settings(tenant_slug, timezone="Asia/Tokyo", **KW))
    first = sync(engine, tenant_slug, BASE)
    second = sync(engine, tenant_slug, STEP)

    shown = cli("history", tenant_slug, "--user", E("ANN"))
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "JST" in text and "Asia/Tokyo" in text
    assert "update" in text and "Ann B" in text and "adopt" not in text
    assert E("bob") not in text.replace(f"{E('ann')}", "")  # only ann's rows
    assert re.search(rf"\b{first}\b", text) and re.search(rf"\b{second}\b", text)
    one = cli("history", tenant_slug, "--run", str(second), "--limit", "3")
    assert one.exit_code == 0 and "newest 3" in one.output
    assert cli("history", "--help").exit_code == 0

    assert cli("undo", tenant_slug, str(first), "--yes").exit_code == 1  # later runs touched it
    no = cli("undo", tenant_slug, str(second), input="n\n")
    assert no.exit_code == 1 and "nothing changed" in no.output
    done = cli("undo", tenant_slug, str(second), "--yes")
    assert done.exit_code == 0, done.output
    assert "user deactivate" in done.output
    assert cli("undo", tenant_slug, "999999999", "--yes").exit_code == 2
    assert cli("undo", "no-such-tenant", "1", "--yes").exit_code == 2
    assert cli("undo", tenant_slug, str(second), "--yes").exit_code == 1  # undone already
