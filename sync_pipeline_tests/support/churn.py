"""A small random directory changed step by step in several tenants' staging alike, with
plain SQL as any writer would (the staging triggers record the change set), and the snapshot
and diff read back for comparison: the building blocks of the incremental-path tests."""

from __future__ import annotations

import json
import random
from typing import Any

import sqlalchemy as sa

from sync_pipeline_tests.support.rows import group, user

USERS_SQL = (
    "INSERT INTO staging.users (tenant, id, user_principal_name, mail, proxy_addresses,"
    " display_name, given_name, surname, job_title, department, account_enabled, user_type,"
    " assigned_licenses, created_date_time) VALUES (:t, :id, :user_principal_name, :mail,"
    " CAST(:proxy_addresses AS jsonb), :display_name, :given_name, :surname, :job_title,"
    " :department, :account_enabled, :user_type, CAST(:assigned_licenses AS jsonb),"
    " CAST(:created_date_time AS timestamptz))"
)
GROUPS_SQL = (
    "INSERT INTO staging.groups (tenant, id, display_name, group_types, mail_enabled,"
    " security_enabled) VALUES (:t, :id, :display_name, CAST(:group_types AS jsonb),"
    " :mail_enabled, :security_enabled)"
)
KINDS = ("security", "microsoft365", "distribution", "mail_enabled_security")
# Mailbox types a churn step stages (None: unreadable, 404; "forget": the row dropped).
PURPOSES = ("user", "shared", "room", "equipment", None, "forget")
# Address stems shared by several users, in forms that collide once normalised.
FORMS = ("{s}@example.com", "{S}@Example.com", " {s}@example.com ", "\uff50{s}@example.com")


class Churn:
    """A small random directory, changed step by step in both tenants' staging alike."""

    def __init__(self, rng: random.Random, tenants: tuple[str, str]) -> None:
        self.rng, self.tenants = rng, tenants
        self.users: set[str] = set()
        self.groups: set[str] = set()
        self.members: set[tuple[str, str, str]] = set()  # (group, member, type)
        self.managers: dict[str, str] = {}
        self.next_id = 0

    def sql(self, conn: sa.Connection, text: str, **params: Any) -> None:
        for t in self.tenants:
            conn.execute(sa.text(text), {"t": t, **params})

    def address(self) -> str:
        stem = f"p{self.rng.randrange(12)}"
        form = self.rng.choice(FORMS)
        return form.replace("{s}", stem).replace("{S}", stem.upper())

    def new_user_row(self, uid: str) -> dict[str, Any]:
        r = self.rng
        row = user(
            uid,
            upn=self.address() if r.random() < 0.7 else None,
            mail=self.address() if r.random() < 0.4 else None,
            proxies=[f"SMTP:{self.address()}"] if r.random() < 0.3 else [],
            enabled=r.random() < 0.85,
            user_type="Guest" if r.random() < 0.1 else "Member",
            licensed=r.random() < 0.85,
            created=f"2024-01-{r.randrange(1, 28):02d}T00:00:00Z",
            job_title=r.choice((None, "Engineer", "Lead")),
        )
        return row

    def add_user(self, conn: sa.Connection) -> None:
        self.next_id += 1
        uid = f"u{self.next_id:03d}"
        self.sql(conn, USERS_SQL, **self.new_user_row(uid))
        self.users.add(uid)

    def remove_user(self, conn: sa.Connection, uid: str) -> None:
        for table, col in (("users", "id"), ("user_licences", "user_id"),
                           ("user_managers", "user_id"), ("user_purposes", "user_id")):  # fmt: skip
            self.sql(conn, f"DELETE FROM staging.{table} WHERE tenant = :t AND {col} = :u", u=uid)
        self.sql(conn, "DELETE FROM staging.group_members WHERE tenant = :t AND member_id = :u",
                 u=uid)  # fmt: skip
        self.users.discard(uid)
        self.members = {m for m in self.members if m[1] != uid}
        self.managers.pop(uid, None)

    def add_group(self, conn: sa.Connection) -> None:
        self.next_id += 1
        gid = f"g{self.next_id:03d}"
        self.sql(conn, GROUPS_SQL, **group(gid, self.rng.choice(KINDS)))
        self.groups.add(gid)

    def remove_group(self, conn: sa.Connection, gid: str) -> None:
        self.sql(conn, "DELETE FROM staging.groups WHERE tenant = :t AND id = :g", g=gid)
        self.sql(conn, "DELETE FROM staging.group_members WHERE tenant = :t AND"
                 " (group_id = :g OR member_id = :g)", g=gid)  # fmt: skip
        self.groups.discard(gid)
        self.members = {m for m in self.members if gid not in m[:2]}

    def join(self, conn: sa.Connection, gid: str, mid: str, kind: str) -> None:
        if (gid, mid, kind) in self.members or gid == mid:
            return
        self.sql(conn, "INSERT INTO staging.group_members (tenant, group_id, member_id,"
                 " member_type) VALUES (:t, :g, :m, :k)", g=gid, m=mid, k=kind)  # fmt: skip
        self.members.add((gid, mid, kind))

    def leave(self, conn: sa.Connection, m: tuple[str, str, str]) -> None:
        self.sql(conn, "DELETE FROM staging.group_members WHERE tenant = :t AND group_id = :g"
                 " AND member_id = :m", g=m[0], m=m[1])  # fmt: skip
        self.members.discard(m)

    def set_manager(self, conn: sa.Connection, uid: str, mid: str | None) -> None:
        self.sql(conn, "DELETE FROM staging.user_managers WHERE tenant = :t AND user_id = :u",
                 u=uid)  # fmt: skip
        self.managers.pop(uid, None)
        if mid is not None:
            self.sql(conn, "INSERT INTO staging.user_managers VALUES (:t, :u, :m)", u=uid, m=mid)
            self.managers[uid] = mid

    def update_user(self, conn: sa.Connection, uid: str) -> None:
        r = self.rng
        column, value = r.choice(
            (
                ("display_name", f"Renamed {r.randrange(100)}"),
                ("user_principal_name", self.address()),
                ("mail", self.address() if r.random() < 0.7 else None),
                ("account_enabled", r.random() < 0.5),
                ("user_type", r.choice(("Member", "Guest"))),
                ("department", r.choice((None, "Sales", "R&D"))),
                ("created_date_time", f"2023-0{r.randrange(1, 10)}-01T00:00:00Z"),
            )
        )
        cast = "timestamptz" if column == "created_date_time" else None
        target = f"CAST(:v AS {cast})" if cast else ":v"
        self.sql(conn, f"UPDATE staging.users SET {column} = {target} WHERE tenant = :t"
                 " AND id = :u", v=value, u=uid)  # fmt: skip
        if r.random() < 0.2:
            lic = json.dumps([{"skuId": "sku-1"}] if r.random() < 0.5 else [])
            self.sql(conn, "UPDATE staging.users SET assigned_licenses = CAST(:v AS jsonb)"
                     " WHERE tenant = :t AND id = :u", v=lic, u=uid)  # fmt: skip

    def set_purpose(self, conn: sa.Connection, uid: str) -> None:
        """A mailbox type read (or found unreadable, or forgotten), as the extraction writes
        staging.user_purposes (migration 024)."""
        r = self.rng
        purpose = r.choice(PURPOSES)
        if purpose == "forget":
            self.sql(conn, "DELETE FROM staging.user_purposes WHERE tenant = :t AND user_id = :u",
                     u=uid)  # fmt: skip
            return
        self.sql(conn, "INSERT INTO staging.user_purposes (tenant, user_id, purpose, status,"
                 " fingerprint) VALUES (:t, :u, :p, :s, 'churn') ON CONFLICT (tenant, user_id)"
                 " DO UPDATE SET purpose = EXCLUDED.purpose, status = EXCLUDED.status",
                 u=uid, p=purpose, s="read" if purpose else "unreadable")  # fmt: skip

    def step(self, conn: sa.Connection) -> None:
        r = self.rng
        users, groups = sorted(self.users), sorted(self.groups)
        move = r.choices(
            ("add_user", "remove_user", "update_user", "move", "join", "leave", "nest",
             "unnest", "add_group", "remove_group", "group_kind", "manager", "purpose"),
            weights=(3, 2, 6, 3, 3, 2, 2, 1, 1, 1, 1, 4, 2),
        )[0]  # fmt: skip
        if move == "add_user" or len(users) < 5:
            self.add_user(conn)
        elif move == "remove_user":
            self.remove_user(conn, r.choice(users))
        elif move == "update_user":
            self.update_user(conn, r.choice(users))
        elif move == "add_group" or len(groups) < 3:
            self.add_group(conn)
        elif move == "remove_group":
            self.remove_group(conn, r.choice(groups))
        elif move == "group_kind":
            gid = r.choice(groups)
            g = group(gid, r.choice(KINDS), name=r.choice((None, f"Name {r.randrange(9)}", " ")))
            self.sql(conn, "UPDATE staging.groups SET display_name = :display_name, group_types"
                     " = CAST(:group_types AS jsonb), mail_enabled = :mail_enabled,"
                     " security_enabled = :security_enabled WHERE tenant = :t AND id = :id",
                     **g)  # fmt: skip
        elif move == "move":
            held = sorted(m for m in self.members if m[2] == "user")
            if held:
                m = r.choice(held)
                self.leave(conn, m)
                self.join(conn, r.choice(groups), m[1], "user")
        elif move == "join":
            self.join(conn, r.choice(groups), r.choice(users), "user")
        elif move == "leave" or move == "unnest":
            kind = "user" if move == "leave" else "group"
            held = sorted(m for m in self.members if m[2] == kind)
            if held:
                self.leave(conn, r.choice(held))
        elif move == "purpose":
            self.set_purpose(conn, r.choice(users))
        elif move == "nest":  # cycles allowed: the transform flattens them
            self.join(conn, r.choice(groups), r.choice(groups), "group")
        else:
            uid = r.choice(users)
            self.set_manager(conn, uid, r.choice(users) if r.random() < 0.85 else None)


def random_settings(rng: random.Random, slug: str, groups: list[str]) -> dict[str, Any]:
    scope = rng.random() < 0.3 and groups
    return {
        "email_method": rng.choice(("upn", "mail", "mail_then_upn", "primary_smtp_then_upn")),
        "include_disabled": rng.random() < 0.3,
        "include_guests": rng.random() < 0.5,
        "exclude_unlicensed": rng.random() < 0.5,
        "import_managers": rng.random() < 0.8,
        "email_deny_list": rng.choice(([], ["p3@example.com"], ["*@example.com"])),
        "exclude_mailbox_types": rng.choice(([], ["shared"], ["shared", "room"])),
        "group_types": rng.choice((["security", "microsoft365"], ["security"])),
        "user_scope": "selected_groups" if scope else "all",
        "scope_group_ids": rng.sample(groups, 1) if scope else [],
    }


def snapshot(conn: sa.Connection, tenant: str) -> tuple[list[Any], list[Any], list[Any]]:
    p = {"t": tenant}
    users = conn.execute(sa.text(
        "SELECT graph_id, included, reason, reasons, email, display_name, first_name, last_name,"
        " job_title, department, manager_graph_id, manager_note FROM sync.snapshot_users"
        " WHERE tenant = :t ORDER BY graph_id"), p).all()  # fmt: skip
    groups = conn.execute(sa.text(
        "SELECT graph_id, included, reason, name, group_kind, mapped_to FROM sync.snapshot_groups"
        " WHERE tenant = :t ORDER BY graph_id"), p).all()  # fmt: skip
    members = conn.execute(sa.text(
        "SELECT group_graph_id, user_graph_id FROM sync.snapshot_memberships WHERE tenant = :t"
        " ORDER BY 1, 2"), p).all()  # fmt: skip
    return users, groups, members


def planned(conn: sa.Connection, tenant: str, run_id: int) -> list[Any]:
    """The diff's rows without the ids that differ between the two tenants' apps."""
    return conn.execute(sa.text(
        "SELECT entity, action, key, label, before::text, after::text, group_external_id,"
        " user_external_id FROM sync.diffs WHERE tenant = :t AND run_id = :r"
        " ORDER BY entity, action, key"), {"t": tenant, "r": run_id}).all()  # fmt: skip
