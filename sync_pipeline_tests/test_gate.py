"""The deactivation gate (load/gate.py): a grace period, held changes over the limits, protected
people, the app's own decisions, and people's decisions on all of them, audited and undoable.

Whole syncs of a staged tenant against real Postgres (support/converge.py); each sync is its
own transaction, so each counts as one complete read."""

from __future__ import annotations

import sqlalchemy as sa

from sync_pipeline.audit import changes as audit
from sync_pipeline.load import gate
from sync_pipeline_tests.support.converge import (
    E,
    add_manual_user,
    app_members,
    app_users,
    converge,
    sync,
)
from sync_pipeline_tests.support.rows import group, make_settings, user

GRACE = {"deactivation_grace_reads": 3, "deactivation_grace_hours": 0}


def directory(n: int, *, disabled: tuple[str, ...] = (), gone: tuple[str, ...] = ()) -> dict:
    """n users u00.. in group g1 (and the first half in g2), some disabled or deleted."""
    ids = [f"u{i:02d}" for i in range(n) if f"u{i:02d}" not in gone]
    return {
        "users": [user(u, enabled=u not in disabled) for u in ids],
        "groups": [group("g1", name="All"), group("g2", name="Half")],
        "members": {"g1": ids, "g2": [u for u in ids if int(u[1:]) < n // 2]},
    }


def active(engine: sa.Engine, tenant: str) -> set[str]:
    with engine.connect() as conn:
        return {e for e, row in app_users(conn, tenant).items() if row[1]}


def members(engine: sa.Engine, tenant: str, email: str) -> set[str]:
    with engine.connect() as conn:
        return {g for g, e, _ in app_members(conn, tenant) if e == email}


def withheld(engine: sa.Engine, tenant: str) -> list[gate.Withheld]:
    with engine.connect() as conn:
        return gate.withheld(conn, tenant)


def decide(engine: sa.Engine, tenant: str, emails: tuple[str, ...], decision: str) -> int:
    with engine.begin() as conn:
        chosen = gate.select(gate.withheld(conn, tenant), emails, not emails, tenant)
        return gate.decide(conn, tenant, chosen, decision, "ops@example.com", "checked with HR")


def test_a_person_out_of_scope_is_pending_for_k_minus_1_reads_and_keeps_everything(
    engine, tenant_slug
):
    converge(engine, tenant_slug, directory(10), **GRACE)
    before = members(engine, tenant_slug, E("u01"))
    assert before == {"All", "Half"}
    for read in (1, 2):
        counts = sync(engine, tenant_slug, directory(10, disabled=("u01",)), **GRACE)
        assert (counts["user_deactivate"], counts["gate_deactivate_pending"]) == (0, 1)
        assert counts["gate_membership_remove_with_person"] == 2
        assert E("u01") in active(engine, tenant_slug)
        assert members(engine, tenant_slug, E("u01")) == before
        (w,) = withheld(engine, tenant_slug)
        assert (w.kind, w.status, w.reason, w.reads) == ("deactivate", "pending", "disabled", read)
    # re-enabled within the grace period: nothing lost, nothing pending
    counts = sync(engine, tenant_slug, directory(10), **GRACE)
    assert not any(v for k, v in counts.items() if k.startswith(("gate_", "user_", "membership_")))
    assert withheld(engine, tenant_slug) == []
    assert members(engine, tenant_slug, E("u01")) == before
    # disabled again: the count starts over (consecutive reads), and the K-th deactivates
    for _ in range(GRACE["deactivation_grace_reads"] - 1):
        counts = sync(engine, tenant_slug, directory(10, disabled=("u01",)), **GRACE)
        assert counts["gate_deactivate_pending"] == 1
    counts = sync(engine, tenant_slug, directory(10, disabled=("u01",)), **GRACE)
    assert (counts["user_deactivate"], counts["membership_remove"]) == (1, 2)
    assert E("u01") not in active(engine, tenant_slug)
    assert withheld(engine, tenant_slug) == []


def test_the_grace_period_in_hours_and_deleted_people(engine, tenant_slug):
    hours = {"deactivation_grace_reads": 1, "deactivation_grace_hours": 24}
    converge(engine, tenant_slug, directory(20), **hours)
    counts = sync(engine, tenant_slug, directory(20, disabled=("u01",)), **hours)
    assert counts["gate_deactivate_pending"] == 1
    (w,) = withheld(engine, tenant_slug)
    assert w.due_at is not None and w.since is not None
    assert (w.due_at - w.since).total_seconds() == 24 * 3600
    with engine.begin() as conn:  # a day passes
        conn.execute(
            sa.text(
                "UPDATE sync.withheld SET since = since - interval '25 hours' WHERE tenant = :t"
            ),
            {"t": tenant_slug},
        )
    counts = sync(engine, tenant_slug, directory(20, disabled=("u01",)), **hours)
    assert counts["user_deactivate"] == 1
    # deleted from Graph, with deleted_skip_grace: no grace at all; disabled ones keep theirs,
    # and so does a soft-deleted one (its memberships kept aside for a restore)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO staging.suspended_members"
                " (tenant, owner_id, owner_kind, group_id, member_id, member_type)"
                " VALUES (:t, 'u04', 'user', 'g1', 'u04', 'user')"
            ),
            {"t": tenant_slug},
        )
    skip = hours | {"deleted_skip_grace": True}
    staged = directory(20, disabled=("u01", "u03"), gone=("u02", "u04"))
    counts = sync(engine, tenant_slug, staged, **skip)
    assert (counts["user_deactivate"], counts["gate_deactivate_pending"]) == (1, 2)
    assert E("u02") not in active(engine, tenant_slug)
    assert {E("u03"), E("u04")} <= active(engine, tenant_slug)
    reasons = {w.label: w.reason for w in withheld(engine, tenant_slug)}
    assert reasons == {E("u03"): "disabled", E("u04"): "soft_deleted"}


def test_over_the_limit_the_rest_applies_and_deactivations_wait_for_a_decision(engine, tenant_slug):
    no_grace = {"deactivation_grace_reads": 1, "deactivation_grace_hours": 0}
    converge(engine, tenant_slug, directory(20), **no_grace)
    leavers = tuple(f"u{i:02d}" for i in range(10, 16))  # 6 of 20: over 10 %
    staged = directory(20, gone=leavers)
    staged["users"].append(user("new1"))
    staged["users"].append(user("new2"))
    staged["users"][0]["job_title"] = "Chief"
    counts = sync(engine, tenant_slug, staged, **no_grace)
    assert (counts["user_create"], counts["user_update"]) == (2, 1)
    assert (counts["user_deactivate"], counts["gate_deactivate_held"]) == (0, 6)
    assert {E(u) for u in leavers} <= active(engine, tenant_slug)
    held = withheld(engine, tenant_slug)
    assert {(w.kind, w.status) for w in held} == {("deactivate", "held")}
    assert counts["gate_membership_remove_with_person"] == 6  # All (Half: u00-u09)
    # held stays held while nobody decides, though the next read finds the same
    assert sync(engine, tenant_slug, staged, **no_grace)["gate_deactivate_held"] == 6
    approved = tuple(E(u) for u in leavers[:5])
    approval = decide(engine, tenant_slug, approved, "approved")
    counts = sync(engine, tenant_slug, staged, **no_grace)
    assert (counts["user_deactivate"], counts["gate_deactivate_held"]) == (5, 1)
    assert counts["gate_deactivate_approved"] == 5
    assert {E(u) for u in leavers} & active(engine, tenant_slug) == {E(leavers[5])}
    # rejected: active for good, until Graph changes them again
    rejection = decide(engine, tenant_slug, (E(leavers[5]),), "rejected")
    for _ in range(2):
        counts = sync(engine, tenant_slug, staged, **no_grace)
        assert (counts["user_deactivate"], counts["gate_deactivate_rejected"]) == (0, 1)
    assert E(leavers[5]) in active(engine, tenant_slug)
    # each decision is a run in the history, and can be undone
    with engine.connect() as conn:
        mine = audit.history(conn, tenant_slug, run_id=rejection)
        assert [(c.entity, c.action, c.label) for c in mine] == [
            ("decision", "reject", E(leavers[5]))
        ]
        assert len(audit.history(conn, tenant_slug, run_id=approval)) == 5
    with engine.begin() as conn:
        audit.undo(conn, tenant_slug, rejection)
    counts = sync(engine, tenant_slug, staged, **no_grace)
    assert (counts["gate_deactivate_rejected"], counts["gate_deactivate_held"]) == (0, 1)
    # back in scope: forgotten, with the decisions on it
    back = directory(20, gone=leavers[:5])
    back["users"] += [user("new1"), user("new2")]
    back["users"][0]["job_title"] = "Chief"
    sync(engine, tenant_slug, back, **no_grace)
    assert withheld(engine, tenant_slug) == []


def test_a_group_losing_a_large_share_has_those_removals_held(engine, tenant_slug):
    no_grace = {"deactivation_grace_reads": 1, "deactivation_grace_hours": 0}
    converge(engine, tenant_slug, directory(40), **no_grace)  # All: 40, Half: 20
    staged = directory(40)
    leaving = [f"u{i:02d}" for i in range(8)]  # 8 of Half's 20 (40 %), still in All
    staged["members"]["g2"] = [u for u in staged["members"]["g2"] if u not in leaving]
    staged["members"]["g1"] = [u for u in staged["members"]["g1"] if u != "u39"]  # 1 of 40
    counts = sync(engine, tenant_slug, staged, **no_grace)
    assert (counts["membership_remove"], counts["gate_membership_remove_held"]) == (1, 8)
    assert members(engine, tenant_slug, E("u39")) == set()
    assert members(engine, tenant_slug, E("u00")) == {"All", "Half"}
    held = withheld(engine, tenant_slug)
    assert {(w.kind, w.status, w.group) for w in held} == {("membership_remove", "held", "Half")}
    assert held[0].reason == "8 of 20 members removed in one sync"
    decide(engine, tenant_slug, (E("u00"),), "approved")
    counts = sync(engine, tenant_slug, staged, **no_grace)
    assert (counts["membership_remove"], counts["gate_membership_remove_held"]) == (1, 7)
    assert members(engine, tenant_slug, E("u00")) == {"All"}
    # a small group is never held: its share means little
    small = {"group_removal_min_members": 50}
    counts = sync(engine, tenant_slug, staged, **(no_grace | small))
    assert counts["gate_membership_remove_held"] == 7  # held until decided
    with engine.begin() as conn:
        chosen = gate.select(gate.withheld(conn, tenant_slug), (), True, tenant_slug)
        gate.decide(conn, tenant_slug, chosen, "approved", "ops@example.com", None)
    counts = sync(engine, tenant_slug, staged, **(no_grace | small))
    assert counts["membership_remove"] == 7
    assert withheld(engine, tenant_slug) == []


def test_a_protected_person_is_never_deactivated(engine, tenant_slug):
    no_grace = {"deactivation_grace_reads": 1, "deactivation_grace_hours": 0}
    protect = no_grace | {"protected_users": [E("u01").upper()]}
    converge(engine, tenant_slug, directory(10), **protect)
    for _ in range(2):
        counts = sync(engine, tenant_slug, directory(10, disabled=("u01",)), **protect)
        assert (counts["user_deactivate"], counts["gate_deactivate_protected"]) == (0, 1)
    assert E("u01") in active(engine, tenant_slug)
    assert members(engine, tenant_slug, E("u01")) == {"All", "Half"}
    (w,) = withheld(engine, tenant_slug)
    assert w.status == "protected"
    # by Graph id too (a GUID, as Graph's are); and unprotected, the usual rules apply
    guid = "7f0c1d2e-0000-4000-8000-000000000002"
    with_guid = directory(10)
    with_guid["users"].append(user(guid, upn="guid.user@example.com"))
    sync(engine, tenant_slug, with_guid, **no_grace)
    by_id = no_grace | {"protected_users": [guid.upper()]}
    counts = sync(engine, tenant_slug, directory(10), **by_id)
    assert (counts["user_deactivate"], counts["gate_deactivate_protected"]) == (0, 1)
    assert "guid.user@example.com" in active(engine, tenant_slug)
    loose = no_grace | {"max_deactivation_percent": 50}
    counts = sync(engine, tenant_slug, directory(10, disabled=("u01",)), **loose)
    assert counts["user_deactivate"] == 2


def test_the_app_deactivating_or_removing_is_not_undone_by_the_sync(engine, tenant_slug):
    no_grace = {
        "deactivation_grace_reads": 1,
        "deactivation_grace_hours": 0,
        "max_deactivation_percent": 50,
    }
    converge(engine, tenant_slug, directory(10), **no_grace)
    with engine.begin() as conn:  # the app deactivates u03 and takes u04 out of Half
        conn.execute(
            sa.text(
                "UPDATE app.users SET is_active = false, deactivated_at = now()"
                " WHERE tenant = :t AND email = :e"
            ),
            {"t": tenant_slug, "e": E("u03")},
        )
        conn.execute(
            sa.text(
                "DELETE FROM app.group_members gm USING app.users u, app.groups g"
                " WHERE gm.tenant = :t AND u.id = gm.user_id AND g.id = gm.group_id"
                " AND u.email = :e AND g.name = 'Half'"
            ),
            {"t": tenant_slug, "e": E("u04")},
        )
    for _ in range(2):
        counts = sync(engine, tenant_slug, directory(10), **no_grace)
        assert (counts["user_reactivate"], counts["gate_reactivate_app_decision"]) == (0, 1)
        assert (counts["membership_add"], counts["gate_membership_add_app_decision"]) == (0, 1)
    assert E("u03") not in active(engine, tenant_slug)
    assert members(engine, tenant_slug, E("u04")) == {"All"}
    # a deactivation the sync made itself is undone by the sync when the person returns
    sync(engine, tenant_slug, directory(10, disabled=("u05",)), **no_grace)
    counts = sync(engine, tenant_slug, directory(10), **no_grace)
    assert counts["user_reactivate"] == 1
    # the explicit way: approve the reactivation and the re-add
    decide(engine, tenant_slug, (E("u03"), E("u04")), "approved")
    counts = sync(engine, tenant_slug, directory(10), **no_grace)
    # u03 kept its memberships when the app deactivated it; u04 is added back to Half
    assert (counts["user_reactivate"], counts["membership_add"]) == (1, 1)
    assert E("u03") in active(engine, tenant_slug)
    assert members(engine, tenant_slug, E("u04")) == {"All", "Half"}
    assert withheld(engine, tenant_slug) == []


def test_an_address_still_held_by_a_pending_person_waits_for_them(engine, tenant_slug):
    """A newcomer given the address of someone pending deactivation (one active user per
    address) is created once that person is deactivated; nothing fails meanwhile."""
    converge(engine, tenant_slug, directory(10), **GRACE)
    staged = directory(10, disabled=("u01",))
    staged["users"].append(user("new1", upn=E("u01")))  # Graph gave u01's address away
    staged["users"][1]["user_principal_name"] = "u01.old@example.com"  # and u01 a new one
    staged["members"]["g1"].append("new1")
    for _ in range(GRACE["deactivation_grace_reads"] - 1):
        counts = sync(engine, tenant_slug, staged, **GRACE)
        assert (counts["user_create"], counts["gate_deactivate_pending"]) == (0, 1)
        assert counts["gate_create_address_in_use"] == 1
        assert E("u01") in active(engine, tenant_slug)
    with engine.connect() as conn:
        waiting = [w for w in gate.withheld(conn, tenant_slug) if w.kind == "create"]
        assert [w.status for w in waiting] == ["address_in_use"]
        assert "still held by" in gate.sentence(waiting[0], "UTC", make_settings(tenant_slug))
    counts = sync(engine, tenant_slug, staged, **GRACE)  # u01 due: deactivated, address free
    assert (counts["user_deactivate"], counts["user_create"]) == (1, 1)
    with engine.connect() as conn:
        holder = app_users(conn, tenant_slug)[E("u01")]
    assert holder[0] == "new1" and holder[1]  # the newcomer, active, at the address
    assert members(engine, tenant_slug, E("u01")) == {"All"}
    assert withheld(engine, tenant_slug) == []


def test_an_address_held_by_an_app_user_the_sync_does_not_manage_waits_without_failing(
    engine, tenant_slug
):
    """A manual app user the sync cannot adopt (it carries another system's id) holds the
    address Graph gives a newcomer, and another manual user holds the address an update
    moves to: both changes wait with a reason naming the holder, everyone else syncs (the
    apply used to fail on users_active_email and stop the tenant), and each is made by the
    first sync after the holder lets the address go."""
    no_grace = {"deactivation_grace_reads": 1, "deactivation_grace_hours": 0}
    converge(engine, tenant_slug, directory(10), **no_grace)
    taken = add_manual_user(engine, tenant_slug, "taken@example.com")
    moved_to = add_manual_user(engine, tenant_slug, "moved@example.com")
    with engine.begin() as conn:  # not adoptable: an id from elsewhere
        conn.execute(
            sa.text("UPDATE app.users SET external_id = 'hr-4711' WHERE id = :id"), {"id": taken}
        )
    staged = directory(10)
    staged["users"] += [user("new1", upn="Taken@example.com"), user("new2")]
    staged["members"]["g1"] += ["new1", "new2"]
    staged["users"][3]["user_principal_name"] = "moved@example.com"  # u03 moves
    for created in (1, 0):  # and again: still waiting, still nothing fails
        counts = sync(engine, tenant_slug, staged, **no_grace)
        assert (counts["user_create"], counts["gate_create_address_in_use"]) == (created, 1)
        assert (counts["user_update"], counts["gate_update_address_in_use"]) == (0, 1)
        assert counts["gate_membership_add_with_person"] == 1  # new1's, waiting with it
    assert {E("new2"), E("u03")} <= active(engine, tenant_slug)
    assert members(engine, tenant_slug, E("new2")) == {"All"}
    with engine.connect() as conn:
        waiting = {w.kind: w for w in gate.withheld(conn, tenant_slug)}
        sentence = gate.sentence(waiting["create"], "UTC", make_settings(tenant_slug))
    assert set(waiting) == {"create", "update"}
    assert (
        f"held by taken@example.com, an active user the sync does not manage (app user {taken})"
        in sentence
    )
    assert "moved@example.com" in waiting["update"].reason
    with engine.begin() as conn:  # the admin retires both holders in the app
        conn.execute(
            sa.text(
                "UPDATE app.users SET is_active = false, deactivated_at = now()"
                " WHERE id IN (:a, :b)"
            ),
            {"a": taken, "b": moved_to},
        )
    counts = sync(engine, tenant_slug, staged, **no_grace)
    assert (counts["user_create"], counts["user_update"]) == (1, 1)
    with engine.connect() as conn:
        users = app_users(conn, tenant_slug)
    assert users["Taken@example.com"][:2] == ("new1", True)
    assert users["moved@example.com"][:2] == ("u03", True)
    assert members(engine, tenant_slug, "Taken@example.com") == {"All"}
    assert withheld(engine, tenant_slug) == []


def test_the_held_check_turns_red_after_a_day(engine, tenant_slug):
    """sync_diff_nothing_held_long (advisory): green while held changes are fresh, a WARN
    naming them once one has waited for a person's decision for more than a day."""
    from sync_pipeline.checks import expectations

    no_grace = {"deactivation_grace_reads": 1, "deactivation_grace_hours": 0}
    converge(engine, tenant_slug, directory(10), **no_grace)
    staged = directory(10, gone=("u01", "u02", "u03"))  # 30 %: held
    sync(engine, tenant_slug, staged, **no_grace)
    sync(engine, tenant_slug, staged, **no_grace)

    def check() -> expectations.Outcome:
        with engine.connect() as conn:
            run_id = conn.execute(
                sa.text("SELECT max(run_id) FROM sync.diff_gate WHERE tenant = :t"),
                {"t": tenant_slug},
            ).scalar_one()
            return expectations.check_diff_held(conn, tenant_slug, run_id)

    fresh = check()
    assert fresh.passed and fresh.facts["held"] == 3
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE sync.withheld SET held_since = now() - interval '30 hours'"
                " WHERE tenant = :t AND kind = 'deactivate' AND key = 'u02'"
            ),
            {"t": tenant_slug},
        )
    late = check()
    assert not late.passed and late.severity == "WARN"
    assert late.facts["held_longest_hours"] >= 30
    (failure,) = late.failures
    assert [row["label"] for row in failure.sample] == [E("u02")]
