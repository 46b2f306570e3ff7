"""Snapshot vs app (diff.compute_diff / apply_diff / safety_check), against real Postgres.

Each scenario runs whole syncs (stage -> snapshot -> diff -> apply) and states the exact app.*
rows it must converge to; every sync is followed by one that must plan nothing.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipeline.audit import changes as audit
from sync_pipeline.load import diff
from sync_pipeline.transform import rules
from sync_pipeline_tests.support.converge import (
    BASE,
    E,
    add_app_group,
    add_manual_membership,
    add_manual_user,
    changes,
    converge,
    new_run,
    state,
)
from sync_pipeline_tests.support.rows import group, make_settings, stage, user


def test_initial_load_then_nothing(engine, tenant_slug):
    planned = converge(engine, tenant_slug, BASE, import_managers=True)
    assert changes(planned) == {
        "user_create": 3,
        "group_create": 2,
        "membership_add": 3,
        "manager_set": 2,
    }
    assert planned["active_users"] == 0
    users, groups, members = state(engine, tenant_slug)
    assert users == {
        E("ann"): ("ann", True, "m365", "Ann", None),
        E("bob"): ("bob", True, "m365", "Bob", E("ann")),
        E("cat"): ("cat", True, "m365", "Cat", E("ann")),
    }
    assert groups == {"Sales": ("sales", "m365", False), "EMEA": ("emea", "m365", False)}
    assert members == {
        ("Sales", E("ann"), "m365"),
        ("Sales", E("bob"), "m365"),
        ("EMEA", E("bob"), "m365"),
    }


def test_mutations_converge(engine, tenant_slug):
    converge(engine, tenant_slug, BASE, import_managers=True)
    # rename a group and a user, disable bob, delete cat, add dan under emea, move ann to emea,
    # dan's manager is bob (disabled: so none), ann now reports to dan
    step = {
        "users": [user("ann", display_name="Ann B"), user("bob", enabled=False), user("dan")],
        "groups": [group("sales", name="Sales EU"), group("emea", "microsoft365", "EMEA")],
        "members": {"sales": ["emea"], "emea": ["bob", "ann", "dan"]},
        "managers": {"bob": "ann", "dan": "bob", "ann": "dan"},
    }
    planned = converge(
        engine,
        tenant_slug,
        step,
        import_managers=True,
        max_deactivations=5,
        max_deactivation_percent=100,
    )
    assert changes(planned) == {
        "user_create": 1,
        "user_update": 1,
        "user_deactivate": 2,
        "group_rename": 1,
        "membership_add": 3,
        "membership_remove": 2,
        "manager_set": 1,
    }
    assert planned["active_users"] == 3
    users, groups, members = state(engine, tenant_slug)
    assert users == {
        E("ann"): ("ann", True, "m365", "Ann B", E("dan")),
        E("bob"): ("bob", False, "m365", "Bob", E("ann")),
        E("cat"): ("cat", False, "m365", "Cat", E("ann")),
        E("dan"): ("dan", True, "m365", "Dan", None),
    }
    assert groups == {"Sales EU": ("sales", "m365", False), "EMEA": ("emea", "m365", False)}
    assert members == {
        ("Sales EU", E("ann"), "m365"),
        ("Sales EU", E("dan"), "m365"),
        ("EMEA", E("ann"), "m365"),
        ("EMEA", E("dan"), "m365"),
    }

    # bob comes back (same row, reactivated), with a new address
    back = step | {
        "users": [user("ann", display_name="Ann B"), user("bob", "robert@example.com"), user("dan")]
    }
    # with bob back, ann -> dan -> bob -> ann is a manager cycle: the transform cuts the link
    # of its lowest Graph id (ann), so ann loses dan as manager and dan gets bob
    planned = converge(engine, tenant_slug, back, import_managers=True)
    assert changes(planned) == {"user_reactivate": 1, "membership_add": 2, "manager_set": 2}
    users, _, _ = state(engine, tenant_slug)
    assert users["robert@example.com"] == ("bob", True, "m365", "Bob", E("ann"))
    assert E("bob") not in users
    assert users[E("dan")][4] == "robert@example.com"
    assert users[E("ann")][4] is None


def test_manual_user_adopted_and_manual_rows_kept(engine, tenant_slug):
    manual_id = add_manual_user(engine, tenant_slug, "ANN@Example.com")
    add_manual_user(engine, tenant_slug, "helpdesk@example.com")  # not in Graph: never touched
    add_app_group(engine, tenant_slug, "Champions")
    planned = converge(engine, tenant_slug, BASE)
    assert changes(planned) == {
        "user_create": 2,
        "user_adopt": 1,
        "group_create": 2,
        "membership_add": 3,
    }
    users, groups, _ = state(engine, tenant_slug)
    assert users == {
        E("ann"): ("ann", True, "m365", "Ann", None),
        E("bob"): ("bob", True, "m365", "Bob", None),
        E("cat"): ("cat", True, "m365", "Cat", None),
        "helpdesk@example.com": (None, True, "manual", "Manual", None),
    }
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT id FROM app.users WHERE tenant = :t AND external_id = 'ann'"),
                {"t": tenant_slug},
            ).scalar_one()
            == manual_id
        )
    assert groups["Champions"] == (None, "app", False)

    # a person adds ann to Champions and cat to Sales; the sync keeps both, also when cat
    # becomes a Graph member of sales (the manual row satisfies it) and later leaves it again
    add_manual_membership(engine, tenant_slug, "Champions", E("ann"))
    add_manual_membership(engine, tenant_slug, "Sales", E("cat"))
    joined = BASE | {"members": {"sales": ["ann", "emea", "cat"], "emea": ["bob"]}}
    assert changes(converge(engine, tenant_slug, joined)) == {}
    gone = BASE | {"members": {"sales": ["emea"], "emea": ["bob"]}}
    assert changes(converge(engine, tenant_slug, gone)) == {"membership_remove": 1}
    _, _, members = state(engine, tenant_slug)
    assert members == {
        ("Champions", E("ann"), "manual"),
        ("Sales", E("cat"), "manual"),
        ("Sales", E("bob"), "m365"),
        ("EMEA", E("bob"), "m365"),
    }


def test_group_removed_then_restored(engine, tenant_slug):
    converge(engine, tenant_slug, BASE)
    planned = converge(engine, tenant_slug, BASE, group_ids=["sales"])
    assert changes(planned) == {"group_remove": 1, "membership_remove": 1}
    _, groups, members = state(engine, tenant_slug)
    assert groups == {"Sales": ("sales", "m365", False), "EMEA": ("emea", "m365", True)}
    assert members == {("Sales", E("ann"), "m365"), ("Sales", E("bob"), "m365")}

    renamed = BASE | {
        "groups": [group("sales", name="Sales"), group("emea", "microsoft365", "Europe")]
    }
    planned = converge(engine, tenant_slug, renamed)
    assert changes(planned) == {"group_restore": 1, "membership_add": 1}
    _, groups, members = state(engine, tenant_slug)
    assert groups == {"Sales": ("sales", "m365", False), "Europe": ("emea", "m365", False)}
    assert ("Europe", E("bob"), "m365") in members

    # deleted in Graph: removed too, never hard-deleted
    vanished = BASE | {"groups": [group("sales", name="Sales")], "members": {"sales": ["ann"]}}
    planned = converge(engine, tenant_slug, vanished)
    assert changes(planned) == {"group_remove": 1, "membership_remove": 2}
    _, groups, _ = state(engine, tenant_slug)
    assert groups["Europe"] == ("emea", "m365", True)


def test_mapped_group_lands_in_app_group(engine, tenant_slug):
    add_app_group(engine, tenant_slug, "Everyone")
    kw = {"group_mapping_enabled": True, "group_mapping": {"sales": "Everyone", "emea": "Everyone"}}
    planned = converge(engine, tenant_slug, BASE, **kw)
    assert changes(planned) == {"user_create": 3, "membership_add": 2}
    _, groups, members = state(engine, tenant_slug)
    assert groups == {"Everyone": (None, "app", False)}
    assert members == {("Everyone", E("ann"), "m365"), ("Everyone", E("bob"), "m365")}

    # mapping dropped: sales becomes a group of its own; Everyone loses the sync's rows only
    add_manual_membership(engine, tenant_slug, "Everyone", E("cat"))
    planned = converge(engine, tenant_slug, BASE, group_ids=["sales"])
    assert changes(planned) == {"group_create": 1, "membership_add": 2, "membership_remove": 2}
    _, groups, members = state(engine, tenant_slug)
    assert groups == {"Everyone": (None, "app", False), "Sales": ("sales", "m365", False)}
    assert members == {
        ("Everyone", E("cat"), "manual"),
        ("Sales", E("ann"), "m365"),
        ("Sales", E("bob"), "m365"),
    }


def test_missing_mapping_target_is_counted(engine, tenant_slug):
    planned = converge(
        engine, tenant_slug, BASE, group_mapping_enabled=True, group_mapping={"sales": "Nope"}
    )
    assert planned["group_mapping_missing"] == 1
    _, groups, members = state(engine, tenant_slug)
    assert groups == {"EMEA": ("emea", "m365", False)}
    assert members == {("EMEA", E("bob"), "m365")}


def test_leavers_address_reused_and_duplicate_loser_deactivated(engine, tenant_slug):
    converge(engine, tenant_slug, {"users": [user("old", "same@example.com"), user("x")]})
    # old leaves Graph, new arrives with the same address in the same sync
    planned = converge(
        engine,
        tenant_slug,
        {"users": [user("new", "Same@Example.com"), user("x")]},
        max_deactivation_percent=100,
    )
    assert changes(planned) == {"user_deactivate": 1, "user_create": 1}
    users, _, _ = state(engine, tenant_slug)
    assert users["Same@Example.com"][:2] == ("new", True)
    assert users["same@example.com"][:2] == ("old", False)
    # x and a newer account share an address: x wins (earlier), the newer never gets a row
    staged = {
        "users": [
            user("new", "Same@Example.com"),
            user("x"),
            user("y", "X@example.com", created="2030-01-01T00:00:00Z"),
        ]
    }
    assert changes(converge(engine, tenant_slug, staged)) == {}


def test_addresses_swapped_and_rotated_between_synced_users(engine, tenant_slug):
    """Users trading addresses in one sync (a swap, a three-way rotation) must not trip the
    app's one-active-address unique index: addresses being replaced are released first."""
    names = ("a", "b", "c", "d", "e")
    converge(engine, tenant_slug, {"users": [user(n, f"{n}@example.com") for n in names]})
    moved = {"a": "b", "b": "a", "c": "d", "d": "e", "e": "C"}
    planned = converge(
        engine, tenant_slug, {"users": [user(n, f"{moved[n]}@example.com") for n in names]}
    )
    assert changes(planned) == {"user_update": 5}
    users, _, _ = state(engine, tenant_slug)
    assert {email: row[0] for email, row in users.items()} == {
        f"{to}@example.com": uid for uid, to in moved.items()
    }
    assert all(row[1] for row in users.values())
    # and the undo trades them back the same way
    with engine.begin() as conn:
        last = conn.execute(
            sa.text("SELECT max(run_id) FROM sync.changes WHERE tenant = :t"), {"t": tenant_slug}
        ).scalar_one()
        audit.undo(conn, tenant_slug, last)
    users, _, _ = state(engine, tenant_slug)
    assert {email: row[0] for email, row in users.items()} == {f"{n}@example.com": n for n in names}


def test_managers_left_alone_without_import_managers(engine, tenant_slug):
    converge(engine, tenant_slug, BASE, import_managers=True)
    users, _, _ = state(engine, tenant_slug)
    assert users[E("bob")][4] == E("ann")
    changed = BASE | {"managers": {"bob": "cat"}}
    assert changes(converge(engine, tenant_slug, changed)) == {}
    users, _, _ = state(engine, tenant_slug)
    assert users[E("bob")][4] == E("ann") and users[E("cat")][4] == E("ann")
    # with import_managers, a manager who leaves the scope is cleared
    gone = changed | {"users": [user("ann"), user("bob"), user("cat", enabled=False)]}
    planned = converge(engine, tenant_slug, gone, import_managers=True, max_deactivation_percent=50)
    assert changes(planned) == {"user_deactivate": 1, "manager_set": 1}
    users, _, _ = state(engine, tenant_slug)
    assert users[E("bob")][4] is None


def test_excluded_never_synced_get_no_row(engine, tenant_slug):
    staged = {
        "users": [
            user("ann"),
            user("guest", "g@x.com", user_type="Guest"),
            user("off", enabled=False),
        ]
    }
    assert changes(converge(engine, tenant_slug, staged)) == {"user_create": 1}
    users, _, _ = state(engine, tenant_slug)
    assert set(users) == {E("ann")}


def test_diff_rows_carry_only_changed_fields(engine, tenant_slug):
    converge(engine, tenant_slug, BASE)
    settings = make_settings(tenant_slug)
    staged = BASE | {"users": [user("ann", job_title="CEO"), user("bob"), user("cat")]}
    with engine.begin() as conn:
        stage(conn, tenant_slug, **staged)
        rules.build_snapshot(conn, settings)
        run_id = new_run(conn, tenant_slug)
        diff.compute_diff(conn, tenant_slug, run_id, settings)
        row = conn.execute(
            sa.text("SELECT * FROM sync.diffs WHERE run_id = :r"), {"r": run_id}
        ).one()
        text = diff.diff_markdown(conn, tenant_slug, run_id)
    assert (row.entity, row.action, row.key, row.label) == ("user", "update", "ann", E("ann"))
    assert (row.before, row.after) == ({"job_title": None}, {"job_title": "CEO"})
    assert "| user update | 1 |" in text
    expected_row = (
        '| user | update | ann@example.com | {"job_title": null} | {"job_title": "CEO"} |'
    )
    assert expected_row in text


@pytest.mark.parametrize(
    ("deactivations", "active", "percent", "maximum", "exceeded"),
    [
        (0, 0, 10, 500, False),  # first sync
        (10, 100, 10, 500, False),  # exactly at the percentage
        (11, 100, 10, 500, True),
        (501, 100_000, 10, 500, True),  # the count limit first
        (500, 100_000, 10, 500, False),
        (1, 1, 100, 500, False),
        (3, 10, 0, 500, True),
    ],
)
def test_safety_check(tenant_slug, deactivations, active, percent, maximum, exceeded):
    settings = make_settings(
        tenant_slug, max_deactivation_percent=percent, max_deactivations=maximum
    )
    over, message = diff.safety_check(
        {"user_deactivate": deactivations, "active_users": active}, settings
    )
    assert over is exceeded
    assert f"{deactivations} of {active} active users" in message
    if exceeded:
        assert f"{percent:g}% of active users or {maximum} users" in message
        assert f"sync-pipeline sync {tenant_slug} --allow-mass-deactivation" in message
        assert "allow_mass_deactivation: true" in message


def test_safety_check_on_a_real_diff(engine, tenant_slug):
    """Over the limit, the gate holds the deactivations (the rest applies); an operator's
    allow_mass_deactivation lets them through, and then the safety check names them."""
    converge(engine, tenant_slug, {"users": [user(f"u{i}") for i in range(10)]})
    settings = make_settings(tenant_slug)
    with engine.begin() as conn:
        stage(conn, tenant_slug, users=[user(f"u{i}") for i in range(8)])
        rules.build_snapshot(conn, settings)
        held = diff.compute_diff(conn, tenant_slug, new_run(conn, tenant_slug), settings)
        allowed = diff.compute_diff(
            conn, tenant_slug, new_run(conn, tenant_slug), settings, allow_mass_deactivation=True
        )
        conn.rollback()
    assert (held["user_deactivate"], held["gate_deactivate_held"]) == (0, 2)
    assert not diff.safety_check(held, settings)[0]
    assert "2 deactivation(s) held" in (diff.held_message(held, settings) or "")
    assert (allowed["user_deactivate"], allowed["active_users"]) == (2, 10)
    assert allowed["gate_deactivate_allowed"] == 2
    over, message = diff.safety_check(allowed, settings)
    assert over
    assert "2 of 10 active users (20.0%)" in message


def test_an_apply_that_wrote_many_rows_analyzes_the_app_tables(engine, tenant_slug):
    """A tenant's first apply writes more memberships than the planner thinks the tenant has,
    so it brings the statistics up to date itself (db.analyze_after_writes): the next diff
    is planned for the rows that are there, whether or not autovacuum comes by."""
    users = [user(f"u{i:03d}") for i in range(160)]
    staged = {"users": users, "groups": [group("g1")], "members": {"g1": [u["id"] for u in users]}}
    stamp = (
        "SELECT last_analyze FROM pg_stat_user_tables WHERE relid = 'app.group_members'::regclass"
    )
    with engine.connect() as conn:
        before = conn.execute(sa.text(stamp)).scalar()
        estimate = conn.execute(
            sa.text("EXPLAIN (FORMAT JSON) SELECT 1 FROM app.group_members WHERE tenant = :t"),
            {"t": tenant_slug},
        ).scalar_one()[0]["Plan"]["Plan Rows"]
    assert estimate < 60  # a new tenant: the planner expects next to nothing
    converge(engine, tenant_slug, staged)
    with engine.connect() as conn:
        after = conn.execute(sa.text(stamp)).scalar()
    assert after is not None and (before is None or after > before)


def test_only_the_last_ten_runs_keep_their_plans(engine, tenant_slug):
    """sync.diffs keeps the plans of the tenant's last 10 runs (`report --csv` reads them); an
    older run's rows are dropped by the next diff, and another tenant's are not touched."""
    from sync_pipeline_tests.support.converge import sync

    other = f"{tenant_slug}-other"
    sync(engine, other, BASE)
    for i in range(12):  # a rename each time: every run plans a change
        staged = {**BASE, "users": [{**BASE["users"][0], "display_name": f"Ann {i}"}]}
        sync(engine, tenant_slug, {**staged, "users": staged["users"] + BASE["users"][1:]})
    with engine.connect() as conn:
        kept = (
            conn.execute(
                sa.text("SELECT DISTINCT run_id FROM sync.diffs WHERE tenant = :t ORDER BY 1"),
                {"t": tenant_slug},
            )
            .scalars()
            .all()
        )
        runs = (
            conn.execute(
                sa.text("SELECT id FROM sync.runs WHERE tenant = :t ORDER BY id"),
                {"t": tenant_slug},
            )
            .scalars()
            .all()
        )
        others = conn.execute(
            sa.text("SELECT count(*) FROM sync.diffs WHERE tenant = :t"), {"t": other}
        ).scalar_one()
    assert kept == runs[-10:]
    assert others > 0
