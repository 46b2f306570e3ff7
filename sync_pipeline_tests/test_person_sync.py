"""`sync TENANT --user EMAIL_OR_UPN` (issue 17, point 5): one person read from the fake Graph
over HTTPS and applied by the tenant's rules, against real Postgres. The person lands exactly
as the next full sync lands them, nobody else changes, and the delta links stay put."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.defs.extract import FULL_READ_TAG
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline_tests.support.cli import run_cli
from sync_pipeline_tests.support.events import events
from sync_pipeline_tests.support.fakegraph import new_tenant, start_fake
from sync_pipeline_tests.support.pipeline import materialise


@pytest.fixture
def doc() -> dict:
    return generate_tenant(name="person-sync", users=60, seed=17, domain="person.example")


@pytest.fixture
def fake(doc, tmp_path_factory):
    """A fake Graph of the test's own: it changes the directory."""
    graph = start_fake([doc], tmp_path_factory.mktemp("fakegraph-person"))
    yield graph
    graph.stop()


def synced(instance, database_url: str, slug: str, **kw):
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False, **kw)
    assert result.success, [e.message for e in result.all_events if e.is_failure][:3]
    return result


def app_state(engine: sa.Engine, slug: str) -> dict[str, dict]:
    """Every app row of the tenant by a stable key, with the columns a sync writes."""
    with engine.connect() as conn:
        users = conn.execute(
            sa.text(
                "SELECT u.external_id, u.email, u.display_name, u.first_name, u.last_name,"
                " u.job_title, u.department, u.is_active, u.source, m.external_id AS manager"
                " FROM app.users u LEFT JOIN app.users m ON m.id = u.manager_id"
                " WHERE u.tenant = :t"
            ),
            {"t": slug},
        ).all()
        members = conn.execute(
            sa.text(
                "SELECT g.external_id AS g, u.external_id AS u, gm.source"
                " FROM app.group_members gm JOIN app.groups g ON g.id = gm.group_id"
                " JOIN app.users u ON u.id = gm.user_id WHERE gm.tenant = :t"
            ),
            {"t": slug},
        ).all()
        groups = conn.execute(
            sa.text(
                "SELECT external_id, name, removed_at IS NULL AS live FROM app.groups"
                " WHERE tenant = :t"
            ),
            {"t": slug},
        ).all()
    return {
        "users": {r.external_id: tuple(r) for r in users},
        "members": {(r.g, r.u): r.source for r in members},
        "groups": {r.external_id: tuple(r) for r in groups},
    }


def links(engine: sa.Engine, slug: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT entity, delta_link FROM sync.delta_state WHERE tenant = :t"),
            {"t": slug},
        ).all()
    return dict(rows)


def withheld(engine: sa.Engine, slug: str) -> list[tuple[tuple[str, str], object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT kind, key, since FROM sync.withheld WHERE tenant = :t ORDER BY 1, 2"),
            {"t": slug},
        ).all()
    return [((r.kind, r.key), r.since) for r in rows]


def about(state: dict[str, dict], graph_id: str) -> dict[str, dict]:
    return {
        "users": {k: v for k, v in state["users"].items() if k == graph_id},
        "members": {k: v for k, v in state["members"].items() if k[1] == graph_id},
    }


def without(state: dict[str, dict], graph_id: str) -> dict[str, dict]:
    return {
        "users": {k: v for k, v in state["users"].items() if k != graph_id},
        "members": {k: v for k, v in state["members"].items() if k[1] != graph_id},
        "groups": state["groups"],
    }


def test_a_new_person_lands_as_the_next_full_sync_lands_them(
    instance, database_url, engine, doc, fake, tmp_path: Path
) -> None:
    tid = doc["tenant_id"]
    staff = [u for u in doc["users"] if u["accountEnabled"] and u["userType"] == "Member"]
    boss, teammate, renamed = staff[0], staff[1], staff[2]
    # enough people in scope that one more stays within the drift check's 10 %
    team = [boss["id"], teammate["id"], *(u["id"] for u in staff[3:25])]
    inner = fake.add_group(tid, {"displayName": "Scope inner"}, team)
    outer = fake.add_group(tid, {"displayName": "Scope outer"}, [inner, renamed["id"]])
    slug = new_tenant(
        engine,
        "pu",
        doc,
        fake,
        user_scope="selected_groups",
        scope_group_ids=[outer],
        import_managers=True,
        deactivation_grace_reads=2,
        deactivation_grace_hours=0,
    )
    synced(instance, database_url, slug)
    # someone else's deactivation pending in the gate: a run of one person must keep its clock
    leaver = staff[5]
    fake.update_user(tid, leaver["id"], accountEnabled=False)
    synced(instance, database_url, slug)
    pending = withheld(engine, slug)
    assert ("deactivate", leaver["id"]) in [k for k, _ in pending]  # with their memberships
    before, links_before = app_state(engine, slug), links(engine, slug)
    assert boss["id"] in before["users"] and renamed["id"] in before["users"]

    # In Graph: a new hire in the nested scope group with a manager, and someone else renamed.
    hire = fake.add_user(
        tid,
        {
            "userPrincipalName": "new.hire@person.example",
            "displayName": "New Hire",
            "givenName": "New",
            "surname": "Hire",
            "department": "Sales",
        },
    )
    fake.add_members(tid, inner, [hire])
    fake.set_manager(tid, hire, boss["id"])
    fake.update_user(tid, renamed["id"], displayName="Renamed Elsewhere")

    env = {"SYNC_PIPELINE_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}
    env["COLUMNS"] = "200"
    run = run_cli("sync", slug, "--user", "New.Hire@person.example", env=env)
    assert run.returncode == 0, run.stderr + run.stdout
    out = run.stdout
    for said in (
        "one person",
        "read from Graph: new.hire@person.example (new to the sync",
        "joined: Scope inner",
        "user_scope: selected_groups",
        "in scope",
        "email_method: upn",
        "import_managers: true",
        "user create: new.hire@person.example",
        "Nobody else was changed",
    ):
        assert said in out, (said, out)

    after = app_state(engine, slug)
    assert without(after, hire) == before  # nobody else: the rename waits for the next sync
    landed = about(after, hire)
    assert landed["users"][hire][1:] == (
        "new.hire@person.example", "New Hire", "New", "Hire", None, "Sales", True, "m365",
        boss["id"],
    )  # fmt: skip
    assert (inner, hire) in landed["members"]
    assert links(engine, slug) == links_before  # the delta links did not move
    with engine.connect() as conn:
        run_row = conn.execute(
            sa.text(
                "SELECT id, person, status FROM sync.runs WHERE tenant = :t ORDER BY id DESC"
                " LIMIT 1"
            ),
            {"t": slug},
        ).one()
        audited = conn.execute(
            sa.text("SELECT entity, action FROM sync.changes WHERE run_id = :r ORDER BY 1, 2"),
            {"r": run_row.id},
        ).all()
    assert (run_row.person, run_row.status) == ("New.Hire@person.example", "success")
    assert withheld(engine, slug) == pending  # the gate's memory of others is untouched
    assert ("user", "create") in audited and ("membership", "add") in audited
    # the run of one person writes that person's event, and nobody else's (issue 18)
    (joined,) = [e for e in events(engine, slug) if e["sync_run"] == run_row.id]
    assert (joined["type"], joined["external_id"]) == ("joiner", hire)
    # flat: the nested group's member is in the group above it too
    with engine.connect() as conn:
        ids = conn.execute(
            sa.text("SELECT id FROM app.groups WHERE tenant = :t AND external_id IN (:a, :b)"),
            {"t": slug, "a": inner, "b": outer},
        ).scalars()
        assert joined["payload"]["groups_added"] == sorted(ids)

    # The next full sync decides the same for the person, and applies the rest.
    full = synced(instance, database_url, slug, tags={FULL_READ_TAG: "true"})
    (planned,) = full.asset_materializations_for_node("sync_diff")
    run_id = planned.metadata["sync_run_id"].value
    with engine.connect() as conn:
        touching = conn.execute(
            sa.text(
                "SELECT entity, action, key FROM sync.diffs WHERE run_id = :r"
                " AND (key = :p OR user_external_id = :p)"
            ),
            {"r": run_id, "p": hire},
        ).all()
    assert touching == []  # nothing left to do for them
    final = app_state(engine, slug)
    assert about(final, hire) == landed
    assert final["users"][leaver["id"]][7] is False  # the second complete read deactivated
    assert final["users"][renamed["id"]][2] == "Renamed Elsewhere"


def test_an_unknown_person_is_bad_input_and_changes_nothing(
    instance, database_url, engine, doc, fake, tmp_path: Path
) -> None:
    slug = new_tenant(engine, "pn", doc, fake)
    synced(instance, database_url, slug)
    before = app_state(engine, slug)
    env = {"SYNC_PIPELINE_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}
    run = run_cli("sync", slug, "--user", "nobody@person.example", env=env)
    assert run.returncode == 2, run.stderr + run.stdout
    assert "Graph has no user 'nobody@person.example'" in run.stderr
    assert app_state(engine, slug) == before
    both = run_cli("sync", slug, "--user", "x@person.example", "--full", env=env)
    assert both.returncode == 2 and "do not go together" in both.stderr
