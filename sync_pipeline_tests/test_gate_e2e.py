"""Issue 16's acceptance, end to end: the sync job over the fake Graph (HTTPS, msal), real
Postgres, and the CLI's pending / held / approve / reject / explain / history / undo.

The gate's rules one by one, over staged rows: test_gate.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline_tests.support.cli import run_cli
from sync_pipeline_tests.support.fakegraph import new_tenant, start_fake
from sync_pipeline_tests.support.pipeline import materialise


@pytest.fixture
def doc() -> dict:
    return generate_tenant(name="gate-e2e", users=80, seed=16, domain="gate.example")


@pytest.fixture
def fake(doc, tmp_path_factory):
    """A fake Graph of each test's own: the tests change the directory."""
    graph = start_fake([doc], tmp_path_factory.mktemp("fakegraph-gate"))
    yield graph
    graph.stop()


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> dict[str, str]:
    # wide enough that rich's tables do not fold an address across lines
    return {
        "SYNC_PIPELINE_HOME": str(tmp_path / "home"),
        "DATABASE_URL": database_url,
        "COLUMNS": "250",
    }


def synced(instance, database_url: str, slug: str):
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure][:3]
    (applied,) = result.asset_materializations_for_node("app_directory")
    (planned,) = result.asset_materializations_for_node("sync_diff")
    return {**{k: v.value for k, v in planned.metadata.items()}, "applied": applied.metadata}


def users(engine: sa.Engine, slug: str) -> dict[str, bool]:
    """email -> is_active."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT email, is_active FROM app.users WHERE tenant = :t"), {"t": slug}
        ).all()
    return {r.email: r.is_active for r in rows}


def memberships(engine: sa.Engine, slug: str, email: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.text(
                    "SELECT g.external_id FROM app.group_members gm"
                    " JOIN app.users u ON u.id = gm.user_id JOIN app.groups g ON g.id = gm.group_id"
                    " WHERE gm.tenant = :t AND u.email = :e"
                ),
                {"t": slug, "e": email},
            ).scalars()
        )


def in_scope(engine: sa.Engine, slug: str, doc: dict, fake) -> list[dict]:
    """The tenant's users the app holds active, as Graph has them (email = UPN, lower-cased)."""
    active = {e for e, a in users(engine, slug).items() if a}
    now = fake.tenant(doc["tenant_id"])["users"]
    return [u for u in now if (u.get("userPrincipalName") or "").lower() in active]


def test_grace_protected_and_the_pending_list(instance, database_url, engine, doc, fake, home):
    tid = doc["tenant_id"]
    slug = new_tenant(
        engine, "ge", doc, fake, deactivation_grace_reads=2, deactivation_grace_hours=0
    )
    synced(instance, database_url, slug)
    leaver, admin = in_scope(engine, slug, doc, fake)[:2]
    leaver_email, admin_email = leaver["userPrincipalName"].lower(), admin["userPrincipalName"]
    run = run_cli("tenant", "set", slug, f"protected_users={admin_email}", "--yes", env=home)
    assert run.returncode == 0, run.stderr + run.stdout
    groups = memberships(engine, slug, leaver_email)
    assert groups
    for uid in (leaver["id"], admin["id"]):
        fake.update_user(tid, uid, accountEnabled=False)

    one = synced(instance, database_url, slug)
    assert (one["gate_deactivate_pending"], one["gate_deactivate_protected"]) == (1, 1)
    assert users(engine, slug)[leaver_email] and memberships(engine, slug, leaver_email) == groups
    pending = run_cli("pending", slug, env=home)
    assert pending.returncode == 0, pending.stderr
    assert leaver_email in pending.stdout and "will be deactivated at" in pending.stdout
    explained = run_cli("explain", slug, leaver_email, env=home)
    assert explained.returncode == 0, explained.stderr
    assert "pending deactivation since" in explained.stdout
    assert "their account is disabled" in explained.stdout
    listed = run_cli("held", slug, env=home)
    assert admin_email.lower() in listed.stdout and "protected" in listed.stdout

    two = synced(instance, database_url, slug)  # the K-th complete read out of scope
    assert two["applied"]["user_deactivate"].value == 1
    assert not users(engine, slug)[leaver_email]
    assert users(engine, slug)[admin_email.lower()]  # protected: never deactivated


def test_held_over_the_limit_then_decided_one_by_one(
    instance, database_url, engine, doc, fake, home, smtp_server
):
    tid = doc["tenant_id"]
    # no grace (support/rows.NO_GRACE)
    slug = new_tenant(engine, "gh", doc, fake, admin_email="admin@gate.example")
    synced(instance, database_url, slug)
    people = in_scope(engine, slug, doc, fake)
    leavers = people[: len(people) * 3 // 10]  # 30 %: over the 10 % limit
    for u in leavers:
        fake.update_user(tid, u["id"], accountEnabled=False)
    joiner = fake.add_user(
        tid, {"userPrincipalName": "new.hire@gate.example", "displayName": "New Hire"}
    )
    assert joiner
    fake.update_user(tid, people[-1]["id"], jobTitle="Head of Gates")

    held = synced(instance, database_url, slug)
    assert held["gate_deactivate_held"] == len(leavers)
    assert (held["user_create"], held["user_deactivate"]) == (1, 0)
    assert held["user_update"] >= 1
    emails = [u["userPrincipalName"].lower() for u in leavers]
    assert (
        all(users(engine, slug)[e] for e in emails) and users(engine, slug)["new.hire@gate.example"]
    )
    listed = run_cli("held", slug, env=home)
    assert listed.returncode == 0 and all(e in listed.stdout for e in emails)
    # the admin is told once, with every held person
    [(to, notice)] = smtp_server.messages
    assert to == ["admin@gate.example"] or "admin@gate.example" in str(to)
    assert "held for review" in notice["Subject"]
    body = notice.get_body(("plain",)).get_content()
    assert all(e in body for e in emails)
    assert synced(instance, database_url, slug)["gate_deactivate_held"] == len(leavers)
    assert len(smtp_server.messages) == 1  # the same held changes are not mailed again

    # bad input: exit 2, naming the tenant and the value
    bad = run_cli("approve", slug, "nobody@gate.example", "--yes", env=home)
    assert bad.returncode == 2 and slug in bad.stderr and "nobody@gate.example" in bad.stderr
    assert run_cli("approve", slug, "--yes", env=home).returncode == 2  # neither names nor --all

    approved = run_cli(
        "approve", slug, *emails[:5], "--yes", "--by", "hr@gate.example", "--apply", env=home
    )
    assert approved.returncode == 0, approved.stderr + approved.stdout
    now = users(engine, slug)  # --apply: synced at once, exactly those five
    assert [e for e in emails if not now[e]] == emails[:5]
    after = synced(instance, database_url, slug)
    assert after["applied"]["user_deactivate"].value == 0
    assert after["gate_deactivate_held"] == len(leavers) - 5

    rejected = run_cli(
        "reject", slug, emails[5], "--reason", "on parental leave", "--yes", env=home
    )
    assert rejected.returncode == 0, rejected.stderr
    decision_run = int(rejected.stdout.split("run ")[1].split(":")[0])
    for _ in range(2):
        again = synced(instance, database_url, slug)
        assert again["gate_deactivate_rejected"] == 1
        assert users(engine, slug)[emails[5]]
    history = run_cli("history", slug, "--run", str(decision_run), env=home)
    assert "decision" in history.stdout and "reject" in history.stdout
    with engine.connect() as conn:
        recorded = conn.execute(
            sa.text("SELECT after FROM sync.changes WHERE tenant = :t AND run_id = :r"),
            {"t": slug, "r": decision_run},
        ).scalar_one()
    assert (recorded["decision"], recorded["note"]) == ("rejected", "on parental leave")
    assert recorded["decided_by"]  # who: $SYNC_PIPELINE_OPERATOR, else the login name
    undone = run_cli("undo", slug, str(decision_run), "--yes", env=home)
    assert undone.returncode == 0, undone.stderr
    back = synced(instance, database_url, slug)
    assert (back["gate_deactivate_rejected"], back["gate_deactivate_held"]) == (
        0,
        len(leavers) - 5,
    )


def test_a_group_losing_40_percent_is_held_and_the_app_keeps_its_own_decisions(
    instance, database_url, engine, doc, fake, home
):
    tid = doc["tenant_id"]
    slug = new_tenant(engine, "gg", doc, fake)
    synced(instance, database_url, slug)
    now = fake.tenant(tid)
    sizes = {g: len(m) for g, m in now["members"].items()}
    big = max(sizes, key=lambda g: sizes[g])
    assert sizes[big] >= 20, sizes
    users_of = [m for m in now["members"][big] if any(u["id"] == m for u in now["users"])]
    gone = users_of[: int(len(users_of) * 0.4) + 1]
    fake.remove_members(tid, big, gone)
    # elsewhere, one ordinary change applies: a member leaves a small group
    small = next(g for g, n in sorted(sizes.items(), key=lambda kv: kv[1]) if n >= 2 and g != big)
    fake.remove_members(tid, small, now["members"][small][:1])
    # and the app deactivates someone itself
    victim = in_scope(engine, slug, doc, fake)[-1]["userPrincipalName"].lower()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE app.users SET is_active = false, deactivated_at = now()"
                " WHERE tenant = :t AND email = :e"
            ),
            {"t": slug, "e": victim},
        )
    result = synced(instance, database_url, slug)
    assert result["gate_membership_remove_held"] == len(gone)
    assert result["applied"]["membership_remove"].value >= 1
    assert result["gate_reactivate_app_decision"] == 1
    assert not users(engine, slug)[victim]
    listed = run_cli("held", slug, env=home)
    assert "membership remove" in listed.stdout and "the app decided otherwise" in listed.stdout
