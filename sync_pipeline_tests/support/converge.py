"""Whole syncs of a staged tenant (stage -> snapshot -> diff -> apply) and the app.* rows they
leave, plus rows made in the app by hand: the building blocks of the diff and audit tests."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.load import diff
from sync_pipeline.transform import rules
from sync_pipeline_tests.support.rows import group, make_settings, stage, user


def new_run(conn: sa.Connection, tenant: str) -> int:
    return conn.execute(
        sa.text("INSERT INTO sync.runs (tenant) VALUES (:t) RETURNING id"), {"t": tenant}
    ).scalar_one()


def sync(engine: sa.Engine, tenant: str, staged: dict[str, Any], **kw: Any) -> dict[str, int]:
    """One whole sync; returns the planned counts. Asserts the apply did exactly that."""
    settings = make_settings(tenant, **kw)
    with engine.begin() as conn, db.tenant_lock(conn, tenant):
        stage(conn, tenant, **staged)
        rules.build_snapshot(conn, settings)
        run_id = new_run(conn, tenant)
        planned = diff.compute_diff(conn, tenant, run_id, settings)
        applied = diff.apply_diff(conn, tenant, run_id)
    assert applied == {k: planned[k] for k in applied}
    return planned


def converge(engine: sa.Engine, tenant: str, staged: dict[str, Any], **kw: Any) -> dict[str, int]:
    """A sync, then a second one that must find nothing to do (idempotent)."""
    planned = sync(engine, tenant, staged, **kw)
    again = sync(engine, tenant, staged, **kw)
    assert changes(again) == {}, again
    return planned


def changes(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k in diff.COUNT_KEYS and v}


def app_users(conn: sa.Connection, tenant: str) -> dict[str, tuple]:
    """email -> (external_id, is_active, source, display_name, manager's email). An address
    held by a deactivated row and an active one (a leaver's address given to a newcomer)
    maps to the active row: rows come inactive first, so the active one is kept."""
    rows = conn.execute(
        sa.text(
            "SELECT u.email, u.external_id, u.is_active, u.source, u.display_name,"
            " u.deactivated_at IS NOT NULL AS deactivated, m.email AS manager"
            " FROM app.users u LEFT JOIN app.users m ON m.id = u.manager_id"
            " WHERE u.tenant = :t ORDER BY u.is_active, u.id"
        ),
        {"t": tenant},
    ).all()
    for r in rows:
        assert r.deactivated == (not r.is_active), r
    return {
        r.email: (r.external_id, r.is_active, r.source, r.display_name, r.manager) for r in rows
    }


def app_groups(conn: sa.Connection, tenant: str) -> dict[str, tuple]:
    """name -> (external_id, source, removed)."""
    rows = conn.execute(
        sa.text(
            "SELECT name, external_id, source, removed_at IS NOT NULL AS removed"
            " FROM app.groups WHERE tenant = :t"
        ),
        {"t": tenant},
    ).all()
    return {r.name: (r.external_id, r.source, r.removed) for r in rows}


def app_members(conn: sa.Connection, tenant: str) -> set[tuple[str, str, str]]:
    """(group name, user email, source)."""
    rows = conn.execute(
        sa.text(
            "SELECT g.name, u.email, gm.source FROM app.group_members gm"
            " JOIN app.groups g ON g.id = gm.group_id JOIN app.users u ON u.id = gm.user_id"
            " WHERE gm.tenant = :t"
        ),
        {"t": tenant},
    ).all()
    return {tuple(r) for r in rows}


def state(engine: sa.Engine, tenant: str) -> tuple[dict, dict, set]:
    with engine.connect() as conn:
        return app_users(conn, tenant), app_groups(conn, tenant), app_members(conn, tenant)


def add_manual_user(engine: sa.Engine, tenant: str, email: str) -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "INSERT INTO app.users (tenant, email, display_name) VALUES (:t, :e, 'Manual')"
                " RETURNING id"
            ),
            {"t": tenant, "e": email},
        ).scalar_one()


def add_app_group(engine: sa.Engine, tenant: str, name: str) -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.text("INSERT INTO app.groups (tenant, name) VALUES (:t, :n) RETURNING id"),
            {"t": tenant, "n": name},
        ).scalar_one()


def add_manual_membership(engine: sa.Engine, tenant: str, group_name: str, email: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO app.group_members (tenant, group_id, user_id, source)"
                " SELECT :t, g.id, u.id, 'manual' FROM app.groups g, app.users u"
                " WHERE g.tenant = :t AND g.name = :g AND u.tenant = :t AND u.email = :e"
            ),
            {"t": tenant, "g": group_name, "e": email},
        )


def E(uid: str) -> str:
    return f"{uid}@example.com"


BASE = {
    "users": [user("ann"), user("bob"), user("cat")],
    "groups": [group("sales", name="Sales"), group("emea", "microsoft365", "EMEA")],
    "members": {"sales": ["ann", "emea"], "emea": ["bob"]},
    "managers": {"bob": "ann", "cat": "ann"},
}
