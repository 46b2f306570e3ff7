"""The settings applied to staging (rules.build_snapshot), against real Postgres.

Each case stages a small tenant with plain INSERTs and states the exact expected snapshot.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipeline.transform import rules
from sync_pipeline_tests.support.rows import (
    group,
    run,
    snapshot_groups,
    snapshot_memberships,
    snapshot_users,
    user,
)

# --- email methods --------------------------------------------------------------------------

ADDRESSES = [
    user(
        "a",
        "A.Upn@Example.com",
        mail=" A.Mail@example.com ",
        proxies=["smtp:alias@example.com", "SMTP:A.Primary@example.com"],
    ),
    user("b", "b.upn@example.com", mail=None, proxies=["smtp:only-alias@example.com"]),
    user("c", None, mail="c.mail@example.com", proxies=["SMTP:c.primary@example.com"]),
    user("d", "not-an-address", mail="bad mail@", proxies=["SMTP:"]),
]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (
            "upn",
            {
                "a": ("A.Upn@Example.com", None),
                "b": ("b.upn@example.com", None),
                "c": (None, "no_email"),
                "d": (None, "no_email"),
            },
        ),
        (
            "mail",
            {
                "a": ("A.Mail@example.com", None),
                "b": (None, "no_email"),
                "c": ("c.mail@example.com", None),
                "d": (None, "no_email"),
            },
        ),
        (
            "mail_then_upn",
            {
                "a": ("A.Mail@example.com", None),
                "b": ("b.upn@example.com", None),
                "c": ("c.mail@example.com", None),
                "d": (None, "no_email"),
            },
        ),
        (
            "primary_smtp",
            {
                "a": ("A.Primary@example.com", None),
                "b": (None, "no_email"),
                "c": ("c.primary@example.com", None),
                "d": (None, "no_email"),
            },
        ),
        (
            "primary_smtp_then_upn",
            {
                "a": ("A.Primary@example.com", None),
                "b": ("b.upn@example.com", None),
                "c": ("c.primary@example.com", None),
                "d": (None, "no_email"),
            },
        ),
    ],
)
def test_email_method(engine, tenant_slug, method, expected):
    counts = run(engine, tenant_slug, {"users": ADDRESSES}, email_method=method)
    with engine.connect() as conn:
        assert snapshot_users(conn, tenant_slug) == expected
    assert counts["excluded_no_email"] == sum(1 for v in expected.values() if v[1])


# --- one setting, one reason ----------------------------------------------------------------

BASIC = {
    "users": [
        user("ok"),
        user("off", enabled=False),
        user("guest", "guest_x.com#EXT#@example.com", user_type="Guest"),
        user("nolic", licensed=False),
        user("ceo"),
        user("contractor", "c@contractors.example.com"),
        user("sub", "s@sub.contractors.example.com"),
    ],
}


@pytest.mark.parametrize(
    ("settings", "excluded"),
    [
        ({}, {"off": "disabled", "guest": "guest"}),
        ({"include_disabled": True}, {"guest": "guest"}),
        ({"include_guests": True}, {"off": "disabled"}),
        ({"include_disabled": True, "include_guests": True}, {}),
        (
            {"exclude_unlicensed": True},
            {"off": "disabled", "guest": "guest", "nolic": "unlicensed"},
        ),
        (
            {"email_deny_list": ["CEO@example.COM", "*@Contractors.example.com"]},
            {"off": "disabled", "guest": "guest", "ceo": "deny_list", "contractor": "deny_list"},
        ),
    ],
)
def test_user_reason(engine, tenant_slug, settings, excluded):
    counts = run(engine, tenant_slug, BASIC, **settings)
    with engine.connect() as conn:
        got = snapshot_users(conn, tenant_slug)
    assert {k: v[1] for k, v in got.items() if v[1]} == excluded
    assert counts["users_included"] == len(BASIC["users"]) - len(excluded)
    assert counts["users_excluded"] == len(excluded)
    for reason in rules.USER_REASONS:
        assert counts[f"excluded_{reason}"] == list(excluded.values()).count(reason)


def test_user_fields_and_reasons_array(engine, tenant_slug):
    staged = {
        "users": [
            user(
                "x",
                " X@Example.com ",
                enabled=False,
                licensed=False,
                job_title="Eng",
                department="R&D",
            )
        ]
    }
    run(
        engine,
        tenant_slug,
        staged,
        exclude_unlicensed=True,
        user_scope="selected_groups",
        scope_group_ids=["nowhere"],
    )
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT * FROM sync.snapshot_users WHERE tenant = :t"), {"t": tenant_slug}
        ).one()
    assert row.reasons == ["out_of_scope", "disabled", "unlicensed"]
    assert row.reason == "out_of_scope"
    assert (row.email, row.first_name, row.job_title, row.department) == (
        "X@Example.com",
        "X",
        "Eng",
        "R&D",
    )


# --- scope and nesting ----------------------------------------------------------------------

NESTED = {
    "users": [user(u) for u in ("u1", "u2", "u3", "u4", "u5")],
    "groups": [
        group("top"),
        group("mid", "microsoft365"),
        group("leaf"),
        group("dl", "distribution"),
        group("other"),
    ],
    # top > mid > leaf > top (a cycle); dl (never imported) holds u3 and sits under mid
    "members": {
        "top": ["u1", "mid"],
        "mid": ["u2", "leaf", "dl"],
        "leaf": ["u4", "top"],
        "dl": ["u3"],
        "other": ["u5"],
    },
}


def test_nested_groups_with_cycle_flatten(engine, tenant_slug):
    run(engine, tenant_slug, NESTED)
    with engine.connect() as conn:
        members = snapshot_memberships(conn, tenant_slug)
        groups = snapshot_groups(conn, tenant_slug)
    everyone = {"u1", "u2", "u3", "u4"}  # the cycle makes top, mid and leaf hold each other
    assert members == (
        {("top", u) for u in everyone}
        | {("mid", u) for u in everyone}
        | {("leaf", u) for u in everyone}
        | {("other", "u5")}
    )
    assert groups["dl"] == ("distribution", "distribution_list")


def test_selected_groups_scope_is_transitive(engine, tenant_slug):
    staged = NESTED | {"members": NESTED["members"] | {"leaf": ["u4"]}}  # no cycle now
    counts = run(engine, tenant_slug, staged, user_scope="selected_groups", scope_group_ids=["mid"])
    with engine.connect() as conn:
        users = snapshot_users(conn, tenant_slug)
        members = snapshot_memberships(conn, tenant_slug)
    assert {k for k, v in users.items() if v[0]} == {"u2", "u3", "u4"}
    assert users["u1"] == (None, "out_of_scope")
    assert users["u5"] == (None, "out_of_scope")
    assert counts["excluded_out_of_scope"] == 2
    # scope narrows users, not groups: "other" and "top" are still imported
    assert members == {
        ("top", "u2"),
        ("top", "u3"),
        ("top", "u4"),
        ("mid", "u2"),
        ("mid", "u3"),
        ("mid", "u4"),
        ("leaf", "u4"),
    }
    with engine.connect() as conn:
        assert snapshot_groups(conn, tenant_slug)["other"] == ("security", None)


def test_scope_through_distribution_list_and_cycle(engine, tenant_slug):
    run(engine, tenant_slug, NESTED, user_scope="selected_groups", scope_group_ids=["dl", "leaf"])
    with engine.connect() as conn:
        users = snapshot_users(conn, tenant_slug)
    assert {k for k, v in users.items() if v[0]} == {"u1", "u2", "u3", "u4"}


# --- groups ---------------------------------------------------------------------------------

GROUPS = {
    "groups": [
        group("m365", "microsoft365"),
        group("sec", "security"),
        group("mesec", "mail_enabled_security"),
        group("dl", "distribution"),
        group("dyn", "dynamic365"),
        group("empty", "security"),
    ],
    "users": [user("u")],
    "members": {"m365": ["u"], "sec": ["u"], "mesec": ["u"], "dl": ["u"], "dyn": ["u"]},
}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {},
            {
                "m365": None,
                "sec": None,
                "mesec": None,
                "dl": "distribution_list",
                "dyn": None,
                "empty": None,
            },
        ),
        (
            {"include_groups": False},
            {g: "groups_disabled" for g in ("m365", "sec", "mesec", "dl", "dyn", "empty")},
        ),
        (
            {"group_types": ["security"]},
            {
                "m365": "type_not_selected",
                "sec": None,
                "mesec": None,
                "dl": "distribution_list",
                "dyn": "type_not_selected",
                "empty": None,
            },
        ),
        (
            {"group_types": ["microsoft365"]},
            {
                "m365": None,
                "sec": "type_not_selected",
                "mesec": "type_not_selected",
                "dl": "distribution_list",
                "dyn": None,
                "empty": "type_not_selected",
            },
        ),
        (
            {"group_types": ["security"], "group_ids": ["m365", "mesec", "dl"]},
            {
                "m365": "type_not_selected",
                "sec": "not_selected",
                "mesec": None,
                "dl": "distribution_list",
                "dyn": "type_not_selected",
                "empty": "not_selected",
            },
        ),
        (
            {"group_mapping_enabled": True, "group_mapping": {"sec": "Staff", "dl": "Nope"}},
            {
                "m365": None,
                "sec": "mapped:Staff",
                "mesec": None,
                "dl": "distribution_list",
                "dyn": None,
                "empty": None,
            },
        ),
    ],
)
def test_group_rules(engine, tenant_slug, settings, expected):
    counts = run(engine, tenant_slug, GROUPS, **settings)
    with engine.connect() as conn:
        groups = snapshot_groups(conn, tenant_slug)
        members = snapshot_memberships(conn, tenant_slug)
    assert {g: reason for g, (_, reason) in groups.items()} == expected
    assert groups["mesec"][0] == "mail_enabled_security"
    imported = {g for g, r in expected.items() if r is None or r.startswith("mapped:")}
    assert members == {(g, "u") for g in imported if g != "empty"}
    assert counts["groups_included"] == len(imported)
    assert counts["memberships"] == len(members)


# --- duplicate addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        ({"enabled": False}, {}, "b"),  # enabled beats disabled (with include_disabled)
        ({"licensed": False}, {}, "b"),  # licensed beats unlicensed
        ({"created": "2024-02-01T00:00:00Z"}, {"created": "2023-02-01T00:00:00Z"}, "b"),
        ({}, {}, "a"),  # all equal: lowest id
    ],
)
def test_duplicate_email_tie_breaks(engine, tenant_slug, first, second, winner):
    staged = {
        "users": [user("a", "Same@Example.com", **first), user("b", " same@example.COM", **second)]
    }
    counts = run(engine, tenant_slug, staged, include_disabled=True)
    with engine.connect() as conn:
        users = snapshot_users(conn, tenant_slug)
    loser = "b" if winner == "a" else "a"
    assert users[loser] == (None, "duplicate_email")
    assert users[winner][0] is not None
    assert counts["excluded_duplicate_email"] == 1


def test_duplicate_only_among_users_passing_other_rules(engine, tenant_slug):
    staged = {
        "users": [
            user("a", "same@example.com", enabled=False),
            user("b", "same@example.com", created="2030-01-01T00:00:00Z"),
        ]
    }
    run(engine, tenant_slug, staged)
    with engine.connect() as conn:
        assert snapshot_users(conn, tenant_slug) == {
            "a": (None, "disabled"),
            "b": ("same@example.com", None),
        }


# --- managers -------------------------------------------------------------------------------


def test_managers(engine, tenant_slug):
    staged = {
        "users": [
            user("boss"),
            user("gone", enabled=False),
            user("e1"),
            user("e2"),
            user("e3"),
            user("e4", enabled=False),
        ],
        "managers": {"e1": "boss", "e2": "gone", "e3": "ghost", "e4": "boss"},
    }
    counts = run(engine, tenant_slug, staged, import_managers=True)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT graph_id, manager_graph_id, manager_note FROM sync.snapshot_users"
                " WHERE tenant = :t"
            ),
            {"t": tenant_slug},
        ).all()
    assert {r.graph_id: (r.manager_graph_id, r.manager_note) for r in rows} == {
        "boss": (None, None),
        "gone": (None, None),
        "e1": ("boss", None),
        "e2": (None, "manager_excluded:disabled"),
        "e3": (None, "manager_not_found"),
        "e4": (None, None),
    }
    assert counts["managers_set"] == 1
    run(engine, tenant_slug, staged, import_managers=False)
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM sync.snapshot_users WHERE tenant = :t"
                    " AND (manager_graph_id IS NOT NULL OR manager_note IS NOT NULL)"
                ),
                {"t": tenant_slug},
            ).scalar()
            == 0
        )


# --- combinations ---------------------------------------------------------------------------


def test_combination_scope_deny_unlicensed_guests_mapping(engine, tenant_slug):
    staged = {
        "users": [
            user("ok"),
            user("denied", "x@deny.example.com"),
            user("shared", licensed=False),
            user("guest", "g@partner.com", user_type="Guest"),
            user("outside"),
            user("dup", "OK@example.com", created="2030-01-01T00:00:00Z"),
        ],
        "groups": [group("scope"), group("team", "microsoft365", "Team"), group("rest")],
        "members": {
            "scope": ["ok", "denied", "shared", "guest", "team", "dup"],
            "team": ["ok", "guest"],
            "rest": ["outside", "ok"],
        },
    }
    counts = run(
        engine,
        tenant_slug,
        staged,
        user_scope="selected_groups",
        scope_group_ids=["scope"],
        email_deny_list=["*@deny.example.com"],
        exclude_unlicensed=True,
        group_mapping_enabled=True,
        group_mapping={"team": "Everyone"},
    )
    with engine.connect() as conn:
        assert snapshot_users(conn, tenant_slug) == {
            "ok": ("ok@example.com", None),
            "denied": (None, "deny_list"),
            "shared": (None, "unlicensed"),
            "guest": (None, "guest"),
            "outside": (None, "out_of_scope"),
            "dup": (None, "duplicate_email"),
        }
        assert snapshot_groups(conn, tenant_slug) == {
            "scope": ("security", None),
            "team": ("microsoft365", "mapped:Everyone"),
            "rest": ("security", None),
        }
        assert snapshot_memberships(conn, tenant_slug) == {
            ("scope", "ok"),
            ("team", "ok"),
            ("rest", "ok"),
        }
    assert counts["users_included"] == 1
    assert counts["groups_mapped"] == 1


def test_rebuild_replaces_only_this_tenant(engine, tenant_slug):
    other = tenant_slug + "-other"
    run(engine, other, {"users": [user("x")]})
    run(engine, tenant_slug, {"users": [user("a"), user("b")]})
    run(engine, tenant_slug, {"users": [user("a")]})
    with engine.connect() as conn:
        assert set(snapshot_users(conn, tenant_slug)) == {"a"}
        assert set(snapshot_users(conn, other)) == {"x"}
