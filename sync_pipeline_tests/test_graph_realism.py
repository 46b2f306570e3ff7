"""Real syncs (the Dagster `sync` job, real Postgres, the fake Graph over HTTPS) through what
Microsoft documents and the fake now does by default: objects repeated within a delta round,
an eventually consistent `$count`, `$batch` answered 424, manager changes seen only through
`manager@delta`, soft delete and restore. Each scenario syncs a first time, changes the
directory, syncs incrementally, and must end exactly where a clean full sync of the same
directory (another slug, no history) ends."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa

from sync_pipeline.extract import pager
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline_tests.support.database import app_state
from sync_pipeline_tests.support.fakegraph import new_tenant, start_fake
from sync_pipeline_tests.support.pipeline import materialise

# What the app holds, by Graph id, independent of app ids and slug.
STATE = {
    "users": """
        SELECT u.external_id, u.email, u.display_name, u.first_name, u.last_name, u.job_title,
               u.department, m.external_id AS manager
        FROM app.users u LEFT JOIN app.users m ON m.id = u.manager_id
        WHERE u.tenant = :t AND u.is_active ORDER BY u.external_id""",
    "groups": """
        SELECT external_id, name FROM app.groups
        WHERE tenant = :t AND removed_at IS NULL AND source = 'm365' ORDER BY external_id""",
    "members": """
        SELECT g.external_id, u.external_id FROM app.group_members gm
        JOIN app.groups g ON g.id = gm.group_id JOIN app.users u ON u.id = gm.user_id
        WHERE gm.tenant = :t AND u.is_active AND g.removed_at IS NULL
        ORDER BY 1, 2""",
}


def state(engine: sa.Engine, slug: str) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            k: [tuple(r) for r in conn.execute(sa.text(q), {"t": slug})] for k, q in STATE.items()
        }


def synced(instance, database_url: str, slug: str):
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure][:3]
    return result


def assert_converged(instance, database_url, engine, doc, fake, slug, **overrides) -> None:
    """`slug`'s app state, after its history, is what a clean full sync gives now."""
    clean = new_tenant(engine, "re", doc, fake, **overrides)
    synced(instance, database_url, clean)
    assert state(engine, slug) == state(engine, clean)


def metadata(result, node: str, asset: str) -> dict:
    mats = result.asset_materializations_for_node(node)
    return next(m.metadata for m in mats if m.asset_key.to_user_string() == asset)


def churn(fake, doc: dict) -> None:
    """A day's changes: an update, a joiner, a leaver, a move between groups, a rename."""
    tid = doc["tenant_id"]
    now = fake.tenant(tid)
    users = [u["id"] for u in now["users"] if u["accountEnabled"]]
    groups = [g["id"] for g in now["groups"]]
    fake.update_user(tid, users[0], jobTitle="Promoted", department="Strategy")
    fake.add_user(
        tid,
        {
            "userPrincipalName": f"joiner.{secrets.token_hex(2)}@{doc['domain']}",
            "displayName": "Jo Iner",
            "givenName": "Jo",
            "surname": "Iner",
        },
    )
    fake.delete_user(tid, users[1])
    mover = next(u for u in users[2:] if u in now["members"][groups[0]])
    fake.remove_members(tid, groups[0], [mover])
    fake.add_members(tid, groups[1], [mover])
    fake.update_group(tid, groups[2], displayName="Renamed in Graph")


@pytest.fixture
def directory(tmp_path):
    """A generated tenant of its own behind a fake started with the test's options."""
    started = []

    def make(users: int = 150, **options):
        doc = generate_tenant(
            name="realism", users=users, seed=31 + len(started), domain="realism.example"
        )
        fake = start_fake([doc], tmp_path / str(len(started)), **options)
        started.append(fake)
        return doc, fake

    yield make
    for fake in started:
        fake.stop()


def test_repeats_at_five_percent_converge(instance, database_url, engine, directory):
    doc, fake = directory(delta_repeat_rate=0.05, delta_page_size=20, delta_member_page_size=25)
    slug = new_tenant(engine, "re", doc, fake, import_managers=True)
    synced(instance, database_url, slug)
    churn(fake, doc)
    synced(instance, database_url, slug)
    assert_converged(instance, database_url, engine, doc, fake, slug, import_managers=True)


def test_a_count_off_by_three_passes_and_off_by_a_quarter_fails_keeping_app_unchanged(
    instance, database_url, engine, directory
):
    doc, fake = directory()
    slug = new_tenant(engine, "re", doc, fake)
    fake.count_offset = 3
    first = synced(instance, database_url, slug)
    meta = metadata(first, "graph_directory", "graph_users")
    assert meta["count_check_users"].value == "within_tolerance"
    assert meta["count_offset_users"].value == -3
    before = app_state(engine, slug)
    churn(fake, doc)
    fake.count_offset = -len(doc["users"]) // 4
    failed = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert not failed.success
    assert app_state(engine, slug) == before
    fake.count_offset = 0
    synced(instance, database_url, slug)
    assert_converged(instance, database_url, engine, doc, fake, slug)


def test_throttled_batches_answered_424_converge(
    instance, database_url, engine, directory, monkeypatch
):
    monkeypatch.setattr(pager, "DELTA_MEMBERS_MAX_USERS", 0)  # members read in $batches
    doc, fake = directory(fail_every_nth_429=4, fault_retry_after=0.05)
    slug = new_tenant(engine, "re", doc, fake)
    synced(instance, database_url, slug)
    churn(fake, doc)
    synced(instance, database_url, slug)
    assert fake.stats["status"].get("424", 0) > 0  # some batches held throttled items
    assert_converged(instance, database_url, engine, doc, fake, slug)


def test_a_manager_only_change_reaches_an_incremental_sync(
    instance, database_url, engine, directory
):
    doc, fake = directory()
    slug = new_tenant(engine, "re", doc, fake, import_managers=True)
    synced(instance, database_url, slug)
    tid = doc["tenant_id"]
    now = fake.tenant(tid)
    synced_users = sorted(r[0] for r in state(engine, slug)["users"])
    report = next(u for u in synced_users if now["managers"].get(u) in synced_users)
    boss = next(u for u in synced_users if u not in (report, now["managers"][report]))
    fake.set_manager(tid, report, boss)
    second = synced(instance, database_url, slug)
    meta = metadata(second, "graph_directory", "graph_users")
    assert meta["mode_users"].value == "incremental"
    managers = {r[0]: r[7] for r in state(engine, slug)["users"]}
    assert managers[report] == boss
    assert_converged(instance, database_url, engine, doc, fake, slug, import_managers=True)


def test_soft_delete_then_restore_keeps_the_app_row_and_its_memberships(
    instance, database_url, engine, directory
):
    doc, fake = directory()
    slug = new_tenant(engine, "re", doc, fake)
    synced(instance, database_url, slug)
    tid = doc["tenant_id"]
    before = state(engine, slug)
    by_groups: dict[str, int] = {}
    for _, member in before["members"]:
        by_groups[member] = by_groups.get(member, 0) + 1
    victim = max(by_groups, key=by_groups.get)  # the synced user in the most groups

    def app_row(conn) -> sa.Row:
        return conn.execute(
            sa.text("SELECT id, is_active FROM app.users WHERE tenant = :t AND external_id = :x"),
            {"t": slug, "x": victim},
        ).one()

    with engine.connect() as conn:
        row_id = app_row(conn).id
    fake.delete_user(tid, victim, reason="changed")
    synced(instance, database_url, slug)
    with engine.connect() as conn:
        assert not app_row(conn).is_active
    assert not [m for m in state(engine, slug)["members"] if m[1] == victim]

    fake.restore_user(tid, victim)
    synced(instance, database_url, slug)
    with engine.connect() as conn:
        row = app_row(conn)
    assert row.id == row_id and row.is_active
    assert state(engine, slug) == before  # same memberships, same fields
    assert_converged(instance, database_url, engine, doc, fake, slug)
