"""A small tenant staged with plain INSERTs, its snapshot read back, and one transform run:
the building blocks of the rules, diff, audit and explain tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.transform import rules

ZERO = "00000000-0000-0000-0000-000000000000"
# Deactivate at the first read that finds a person out of scope: the behaviour the tests
# written before the deactivation gate (load/gate.py) describe, and what K = 1, D = 0 keeps.
# The gate's own tests (test_gate.py) use the defaults or set these themselves.
NO_GRACE: dict[str, Any] = {"deactivation_grace_reads": 1, "deactivation_grace_hours": 0}


def make_settings(slug: str, **kw: Any) -> TenantSettings:
    return TenantSettings(
        slug=slug, tenant_id=ZERO, client_id=ZERO, client_secret_env="X", **(NO_GRACE | kw)
    )


def user(
    uid: str,
    upn: str | None = "",
    *,
    mail: str | None = None,
    proxies: Iterable[str] = (),
    enabled: bool | None = True,
    user_type: str = "Member",
    licensed: bool = True,
    created: str = "2024-01-01T00:00:00Z",
    display_name: str | None = None,
    job_title: str | None = None,
    department: str | None = None,
) -> dict[str, Any]:
    """A staging.users row; upn defaults to <uid>@example.com."""
    return {
        "id": uid,
        "user_principal_name": f"{uid}@example.com" if upn == "" else upn,
        "mail": mail,
        "proxy_addresses": json.dumps(list(proxies)),
        "display_name": display_name or uid.title(),
        "given_name": uid.title(),
        "surname": "Test",
        "job_title": job_title,
        "department": department,
        "account_enabled": enabled,
        "user_type": user_type,
        "assigned_licenses": json.dumps(
            [{"skuId": "sku-1", "disabledPlans": []}] if licensed else []
        ),
        "created_date_time": created,
    }


def group(gid: str, kind: str = "security", name: str | None = None) -> dict[str, Any]:
    types, mail_enabled, security_enabled = {
        "microsoft365": (["Unified"], True, False),
        "security": ([], False, True),
        "mail_enabled_security": ([], True, True),
        "distribution": ([], True, False),
        "dynamic365": (["Unified", "DynamicMembership"], True, False),
    }[kind]
    return {
        "id": gid,
        "display_name": name or gid.title(),
        "group_types": json.dumps(types),
        "mail_enabled": mail_enabled,
        "security_enabled": security_enabled,
    }


def stage(
    conn: sa.Connection,
    tenant: str,
    users: Iterable[dict[str, Any]] = (),
    groups: Iterable[dict[str, Any]] = (),
    members: dict[str, Iterable[str]] | None = None,
    managers: dict[str, str] | None = None,
) -> None:
    """Replace the tenant's staging rows (members: group -> direct member ids)."""
    for table in ("users", "groups", "group_members", "user_managers", "user_licences"):
        conn.execute(sa.text(f"DELETE FROM staging.{table} WHERE tenant = :t"), {"t": tenant})
    users, groups = list(users), list(groups)
    if users:
        conn.execute(
            sa.text(
                "INSERT INTO staging.users (tenant, id, user_principal_name, mail, proxy_addresses,"
                " display_name, given_name, surname, job_title, department, account_enabled,"
                " user_type, assigned_licenses, created_date_time) VALUES (:tenant, :id,"
                " :user_principal_name, :mail, CAST(:proxy_addresses AS jsonb), :display_name,"
                " :given_name, :surname, :job_title, :department, :account_enabled, :user_type,"
                " CAST(:assigned_licenses AS jsonb), CAST(:created_date_time AS timestamptz))"
            ),
            [u | {"tenant": tenant} for u in users],
        )
    if groups:
        conn.execute(
            sa.text(
                "INSERT INTO staging.groups (tenant, id, display_name, group_types, mail_enabled,"
                " security_enabled) VALUES (:tenant, :id, :display_name,"
                " CAST(:group_types AS jsonb), :mail_enabled, :security_enabled)"
            ),
            [g | {"tenant": tenant} for g in groups],
        )
    group_ids = {g["id"] for g in groups}
    rows = [
        {"t": tenant, "g": gid, "m": mid, "k": "group" if mid in group_ids else "user"}
        for gid, mids in (members or {}).items()
        for mid in mids
    ]
    if rows:
        conn.execute(
            sa.text(
                "INSERT INTO staging.group_members (tenant, group_id, member_id, member_type)"
                " VALUES (:t, :g, :m, :k)"
            ),
            rows,
        )
    if managers:
        conn.execute(
            sa.text("INSERT INTO staging.user_managers VALUES (:t, :u, :m)"),
            [{"t": tenant, "u": u, "m": m} for u, m in managers.items()],
        )


def snapshot_users(conn: sa.Connection, tenant: str) -> dict[str, tuple[str | None, str | None]]:
    """graph id -> (email if included else None, reason)."""
    rows = conn.execute(
        sa.text(
            "SELECT graph_id, included, email, reason FROM sync.snapshot_users WHERE tenant = :t"
        ),
        {"t": tenant},
    )
    return {r.graph_id: (r.email if r.included else None, r.reason) for r in rows}


def snapshot_groups(conn: sa.Connection, tenant: str) -> dict[str, tuple[str, str | None]]:
    """graph id -> (kind, reason or 'mapped:<name>' or None)."""
    rows = conn.execute(
        sa.text(
            "SELECT graph_id, group_kind, included, reason, mapped_to FROM sync.snapshot_groups"
            " WHERE tenant = :t"
        ),
        {"t": tenant},
    )
    return {
        r.graph_id: (r.group_kind, f"mapped:{r.mapped_to}" if r.mapped_to else r.reason)
        for r in rows
    }


def snapshot_memberships(conn: sa.Connection, tenant: str) -> set[tuple[str, str]]:
    rows = conn.execute(
        sa.text(
            "SELECT group_graph_id, user_graph_id FROM sync.snapshot_memberships WHERE tenant = :t"
        ),
        {"t": tenant},
    )
    return {tuple(r) for r in rows}


def run(engine: sa.Engine, tenant: str, staged: dict[str, Any], **kw: Any) -> dict[str, int]:
    settings = make_settings(tenant, **kw)
    with engine.begin() as conn:
        stage(conn, tenant, **staged)
        return rules.build_snapshot(conn, settings)
