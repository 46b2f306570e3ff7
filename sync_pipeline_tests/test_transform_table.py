"""Table-driven transform tests on generated tenants: every setting, and combinations of them.

Each case loads a tenant made by `fakegraph.generate_tenant` into staging (COPY through
`staging.StagingWriter`, as the extraction does), runs `rules.build_snapshot`, and compares the
whole snapshot (users with address and every reason, groups with reason and mapping, flattened
memberships, managers) with the one `expected_snapshot` computes here in plain Python from the
tenant document and the project's rules (docs/checks.md), independently of the SQL. The
hand-made edge cases are in test_rules.py; this file adds realistic tenants (nesting, a
cycle, case-only duplicate UPNs, padded addresses, guests, shared mailboxes, dynamic and
mail-enabled groups).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.extract import staging
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.transform import addresses, rules

ZERO = "00000000-0000-0000-0000-000000000000"
ADDRESS = re.compile(rules.ADDRESS_RE)


@pytest.fixture(scope="module")
def doc() -> dict:
    return generate_tenant(name="table-test", users=320, seed=11, domain="table.example")


def load(conn: sa.Connection, tenant: str, doc: dict) -> None:
    """The tenant document into staging, as the extract assets write it."""
    writer = staging.StagingWriter(conn, tenant)
    for table in staging.COLUMNS:
        writer.clear(table)
    users = {u["id"] for u in doc["users"]}
    groups = {g["id"] for g in doc["groups"]}
    writer.copy("users", (staging.user_row(tenant, u) for u in doc["users"]))
    writer.copy("user_licences", (r for u in doc["users"] for r in staging.licence_rows(tenant, u)))
    writer.copy("groups", (staging.group_row(tenant, g) for g in doc["groups"]))
    kinds = {o["id"]: staging.member_type(o) for o in doc["other_objects"]}
    writer.copy(
        "group_members",
        (
            (tenant, gid, mid, "user" if mid in users else "group" if mid in groups else kinds[mid])
            for gid, mids in doc["members"].items()
            for mid in dict.fromkeys(mids)
        ),
    )
    writer.copy("user_managers", ((tenant, u, m) for u, m in doc["managers"].items()))
    # the mailbox types as the extraction keeps them (extract/purposes.py): the generated
    # shared, room and equipment mailboxes; everyone else unread (kept, as a 404 would be)
    conn.execute(sa.text("DELETE FROM staging.user_purposes WHERE tenant = :t"), {"t": tenant})
    for uid, purpose in doc.get("mailbox_purposes", {}).items():
        conn.execute(
            sa.text(
                "INSERT INTO staging.user_purposes (tenant, user_id, purpose, status, fingerprint)"
                " VALUES (:t, :u, :p, 'read', '')"
            ),
            {"t": tenant, "u": uid, "p": purpose},
        )


# -- the rules, in Python, from the tenant document ------------------------------------------------


def _trim(value: str | None) -> str | None:
    return addresses.clean(value)  # NFKC, Unicode whitespace trimmed


def resolve(u: dict, method: str) -> str | None:
    upn, mail = _trim(u.get("userPrincipalName")), _trim(u.get("mail"))
    smtp = next(
        (_trim(p[5:]) for p in u.get("proxyAddresses") or [] if p.startswith("SMTP:")), None
    )
    ok = lambda a: a is not None and ADDRESS.search(a) is not None  # noqa: E731
    return {
        "upn": upn,
        "mail": mail,
        "mail_then_upn": mail if ok(mail) else (upn or mail),
        "primary_smtp": smtp,
        "primary_smtp_then_upn": smtp if ok(smtp) else (upn or smtp),
    }[method]


def group_kind(g: dict) -> str:
    if "Unified" in g["groupTypes"]:
        return "microsoft365"
    if g["securityEnabled"]:
        return "mail_enabled_security" if g["mailEnabled"] else "security"
    return "distribution" if g["mailEnabled"] else "unknown"


def below(doc: dict, start: str) -> set[str]:
    """The group and every group nested below it (cycle-safe)."""
    groups = {g["id"] for g in doc["groups"]}
    seen, todo = {start}, [start]
    while todo:
        for m in doc["members"].get(todo.pop(), []):
            if m in groups and m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def direct_users(doc: dict, group_ids: set[str]) -> set[str]:
    users = {u["id"] for u in doc["users"]}
    return {m for g in group_ids for m in doc["members"].get(g, []) if m in users}


def expected_snapshot(doc: dict, s: TenantSettings) -> dict[str, Any]:
    scoped = set().union(*(direct_users(doc, below(doc, g)) for g in s.scope_group_ids))
    deny = [addresses.key(e) for e in s.email_deny_list]
    users: dict[str, dict[str, Any]] = {}
    for u in doc["users"]:
        address = resolve(u, s.email_method)
        valid = address is not None and ADDRESS.search(address) is not None
        enabled = u["accountEnabled"] is not False
        licensed = bool(u["assignedLicenses"])
        checks = [
            ("out_of_scope", s.user_scope == "selected_groups" and u["id"] not in scoped),
            ("disabled", not enabled and not s.include_disabled),
            ("guest", u["userType"].lower() == "guest" and not s.include_guests),
            (
                "mailbox_type",
                doc.get("mailbox_purposes", {}).get(u["id"]) in s.exclude_mailbox_types,
            ),
            ("unlicensed", not licensed and s.exclude_unlicensed),
            ("no_email", not valid),
            (
                "deny_list",
                valid
                and (
                    addresses.key(address) in deny
                    or f"*@{addresses.key(address).split('@')[1]}" in deny
                ),
            ),
        ]
        users[u["id"]] = {
            "email": address,
            "reasons": [r for r, hit in checks if hit],
            "rank": (not enabled, not licensed, u["createdDateTime"], u["id"]),
        }
    by_address: dict[str, list[str]] = {}
    for uid, row in users.items():
        if not row["reasons"]:
            by_address.setdefault(addresses.key(row["email"]), []).append(uid)
    for holders in by_address.values():
        for loser in sorted(holders, key=lambda i: users[i]["rank"])[1:]:
            users[loser]["reasons"] = ["duplicate_email"]
    included = {uid for uid, row in users.items() if not row["reasons"]}

    groups: dict[str, tuple[bool, str | None, str | None]] = {}
    for g in doc["groups"]:
        kind = group_kind(g)
        family = "microsoft365" if kind == "microsoft365" else "security"
        reason = next(
            (
                r
                for r, hit in (
                    ("groups_disabled", not s.include_groups),
                    ("distribution_list", kind == "distribution"),
                    ("unsupported_type", kind == "unknown"),
                    ("type_not_selected", family not in s.group_types),
                    ("not_selected", bool(s.group_ids) and g["id"] not in s.group_ids),
                )
                if hit
            ),
            None,
        )
        mapped = (
            s.group_mapping.get(g["id"]) if reason is None and s.group_mapping_enabled else None
        )
        groups[g["id"]] = (reason is None, reason, mapped)

    memberships = {
        (gid, uid)
        for gid, (ok, _, _) in groups.items()
        if ok
        for uid in direct_users(doc, below(doc, gid)) & included
    }
    managers: dict[str, tuple[str | None, str | None]] = {}
    for uid in users:
        boss = doc["managers"].get(uid)
        if not s.import_managers or uid not in included:
            managers[uid] = (None, None)
        elif boss is None:
            managers[uid] = (None, None)
        elif boss not in users:
            managers[uid] = (None, "manager_not_found")
        elif boss in included:
            managers[uid] = (boss, None)
        else:
            managers[uid] = (None, f"manager_excluded:{users[boss]['reasons'][0]}")
    # a manager cycle among the links kept is cut at its lowest Graph id
    links = {u: m for u, (m, _) in managers.items() if m is not None}
    for uid in list(links):
        ring, at = [uid], links[uid]
        while at in links and at not in ring:
            ring, at = [*ring, at], links[at]
        if at == uid and uid == min(ring):
            managers[uid] = (None, "manager_cycle:" + " ".join(ring))
    return {
        "users": {
            uid: (uid in included, row["reasons"], row["email"]) for uid, row in users.items()
        },
        "groups": groups,
        "memberships": memberships,
        "managers": managers,
    }


def actual_snapshot(conn: sa.Connection, tenant: str) -> dict[str, Any]:
    t = {"t": tenant}
    users = conn.execute(
        sa.text(
            "SELECT graph_id, included, reason, reasons, email, manager_graph_id, manager_note"
            " FROM sync.snapshot_users WHERE tenant = :t"
        ),
        t,
    ).all()
    for r in users:  # the stored reason is always the first of the reasons
        assert r.reason == (r.reasons[0] if r.reasons else None)
    groups = conn.execute(
        sa.text(
            "SELECT graph_id, included, reason, mapped_to FROM sync.snapshot_groups"
            " WHERE tenant = :t"
        ),
        t,
    ).all()
    members = conn.execute(
        sa.text(
            "SELECT group_graph_id, user_graph_id FROM sync.snapshot_memberships WHERE tenant = :t"
        ),
        t,
    ).all()
    return {
        "users": {r.graph_id: (r.included, list(r.reasons), r.email) for r in users},
        "groups": {r.graph_id: (r.included, r.reason, r.mapped_to) for r in groups},
        "memberships": {tuple(r) for r in members},
        "managers": {r.graph_id: (r.manager_graph_id, r.manager_note) for r in users},
    }


# -- the table -------------------------------------------------------------------------------------


def gid(doc: dict, name: str) -> str:
    return next(g["id"] for g in doc["groups"] if g["displayName"] == name)


def first_member(doc: dict) -> dict:
    return doc["users"][0]  # the CEO: enabled, member, with a vanity address


Case = Callable[[dict], dict[str, Any]]


def _methods() -> list[str]:
    return ["upn", "mail", "mail_then_upn", "primary_smtp", "primary_smtp_then_upn"]


CASES: dict[str, Case] = {
    "defaults": lambda d: {},
    **{f"email_method={m}": (lambda d, m=m: {"email_method": m}) for m in _methods()},
    "include_disabled": lambda d: {"include_disabled": True},
    "include_guests": lambda d: {"include_guests": True},
    "exclude_unlicensed": lambda d: {"exclude_unlicensed": True},
    "exclude_mailbox_types": lambda d: {"exclude_mailbox_types": ["shared", "room"]},
    "import_managers": lambda d: {"import_managers": True},
    "import_managers+exclude_unlicensed": lambda d: {
        "import_managers": True,
        "exclude_unlicensed": True,
    },
    "deny_list": lambda d: {
        "email_deny_list": [
            first_member(d)["userPrincipalName"].upper(),
            "*@tabletest.onmicrosoft.com",
        ]
    },
    "scope=Engineering (nested)": lambda d: {
        "user_scope": "selected_groups",
        "scope_group_ids": [gid(d, "Engineering")],
    },
    "scope=Project Falcon (cycle)": lambda d: {
        "user_scope": "selected_groups",
        "scope_group_ids": [gid(d, "Project Falcon")],
    },
    "scope=newsletter (distribution list)": lambda d: {
        "user_scope": "selected_groups",
        "scope_group_ids": [gid(d, "Company Newsletter")],
    },
    "include_groups=false": lambda d: {"include_groups": False},
    "group_types=microsoft365": lambda d: {"group_types": ["microsoft365"]},
    "group_types=security": lambda d: {"group_types": ["security"]},
    "group_ids": lambda d: {
        "group_ids": [gid(d, "Engineering"), gid(d, "Finance Approvers"), gid(d, "All Staff")]
    },
    "group_mapping": lambda d: {
        "group_mapping_enabled": True,
        "group_mapping": {gid(d, "All Staff"): "Everyone", gid(d, "Engineering"): "Engineers"},
    },
    "scope+deny+unlicensed+guests+mapping": lambda d: {
        "user_scope": "selected_groups",
        "scope_group_ids": [gid(d, "All Staff"), gid(d, "External Partners")],
        "email_deny_list": ["*@table.example"],
        "exclude_unlicensed": True,
        "include_guests": True,
        "group_mapping_enabled": True,
        "group_mapping": {gid(d, "Project Falcon"): "Falcon"},
    },
    "mail_then_upn+disabled+managers+security only+selected": lambda d: {
        "email_method": "mail_then_upn",
        "include_disabled": True,
        "import_managers": True,
        "group_types": ["security"],
        "group_ids": [gid(d, "Engineering - Platform"), gid(d, "Project Falcon Core")],
    },
    "primary_smtp+scope cycle+guests+unlicensed+deny": lambda d: {
        "email_method": "primary_smtp",
        "user_scope": "selected_groups",
        "scope_group_ids": [gid(d, "Project Falcon Core"), gid(d, "External Partners")],
        "include_guests": True,
        "exclude_unlicensed": True,
        "email_deny_list": [d["users"][5]["mail"] or "nobody@table.example"],
        "import_managers": True,
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_generated_tenant_snapshot_is_exact(engine, tenant_slug, doc, case):
    settings = TenantSettings(
        slug=tenant_slug, tenant_id=ZERO, client_id=ZERO, client_secret_env="X", **CASES[case](doc)
    )
    with engine.begin() as conn:
        load(conn, tenant_slug, doc)
        counts = rules.build_snapshot(conn, settings)
    with engine.connect() as conn:
        got = actual_snapshot(conn, tenant_slug)
    want = expected_snapshot(doc, settings)
    for part in ("users", "groups", "managers"):
        diff = {k: (got[part].get(k), v) for k, v in want[part].items() if got[part].get(k) != v}
        assert not diff, f"{part} differ (got, want): {dict(list(diff.items())[:5])}"
        assert got[part].keys() == want[part].keys()
    assert got["memberships"] == want["memberships"]
    assert counts["users_included"] == sum(1 for v in want["users"].values() if v[0])
    assert counts["memberships"] == len(want["memberships"])


def test_the_table_reaches_every_user_reason(doc):
    """The cases above exercise every user reason code of the transform at least once."""
    seen = set()
    for case in CASES.values():
        settings = TenantSettings(
            slug="x", tenant_id=ZERO, client_id=ZERO, client_secret_env="X", **case(doc)
        )
        for _, reasons, _ in expected_snapshot(doc, settings)["users"].values():
            seen.update(reasons)
    assert seen == set(rules.USER_REASONS)
