"""Issue 18's outbox, end to end: the sync job over the fake Graph (HTTPS, msal) and real
Postgres write exactly the events of their changes, in the apply's transaction; an undo
writes the inverse ones; a failed apply writes none; a commit notifies. Every event is
validated against sync_pipeline/outbox/events.schema.json (support/events.py)."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from sync_pipeline.audit import changes as audit
from sync_pipeline.cli import eventscmd
from sync_pipeline.core import db
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.load import diff, gate
from sync_pipeline.outbox import events as outbox
from sync_pipeline_tests.support.events import by_type, events, last_id
from sync_pipeline_tests.support.fakegraph import new_tenant, start_fake
from sync_pipeline_tests.support.pipeline import materialise


@pytest.fixture
def doc() -> dict:
    return generate_tenant(name="events", users=60, seed=18, domain="events.example")


@pytest.fixture
def fake(doc, tmp_path_factory):
    """A fake Graph of each test's own: the tests change the directory."""
    graph = start_fake([doc], tmp_path_factory.mktemp("fakegraph-events"))
    yield graph
    graph.stop()


def test_the_listen_statement_names_the_documented_channel():
    assert db.load_sql("outbox/listen").strip().splitlines()[-1] == f"LISTEN {outbox.CHANNEL}"


def synced(instance, database_url: str, slug: str) -> int:
    """One sync through Dagster; its sync run id."""
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure][:3]
    (applied,) = result.asset_materializations_for_node("app_directory")
    return int(applied.metadata["sync_run_id"].value)


def active_members(engine: sa.Engine, slug: str, fake, doc: dict) -> list[dict]:
    """Graph users the app holds active, with at least one membership in the app."""
    with engine.connect() as conn:
        ids = set(
            conn.execute(
                sa.text(
                    "SELECT u.external_id FROM app.users u WHERE u.tenant = :t AND u.is_active"
                    " AND EXISTS (SELECT 1 FROM app.group_members gm WHERE gm.user_id = u.id)"
                ),
                {"t": slug},
            ).scalars()
        )
    return [u for u in fake.tenant(doc["tenant_id"])["users"] if u["id"] in ids]


def new_person(n: int) -> dict:
    local = f"joiner{n}-{uuid.uuid4().hex[:6]}"
    return {
        "displayName": f"Joiner {n}",
        "givenName": "Joiner",
        "surname": str(n),
        "userPrincipalName": f"{local}@events.example",
        "mail": f"{local}@events.example",
        "department": "Onboarding",
        "jobTitle": "Trainee",
    }


def test_a_sync_writes_exactly_its_events_in_the_apply_transaction(
    instance, database_url, engine, doc, fake
):
    tid = doc["tenant_id"]
    slug = new_tenant(engine, "ev", doc, fake)
    first = synced(instance, database_url, slug)
    initial = by_type(events(engine, slug))
    with engine.connect() as conn:
        users, groups = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM app.users WHERE tenant = :t),"
                " (SELECT count(*) FROM app.groups WHERE tenant = :t AND source = 'm365')"
            ),
            {"t": slug},
        ).one()
    # a first load: one joiner per person (their groups in it), one event per group
    assert set(initial) == {"joiner", "group_created"}
    assert len(initial["joiner"]) == users and len(initial["group_created"]) == groups
    assert all(e["sync_run"] == first for es in initial.values() for e in es)
    joined_groups = sum(len(e["payload"]["groups_added"]) for e in initial["joiner"])
    with engine.connect() as conn:
        members = conn.execute(
            sa.text("SELECT count(*) FROM app.group_members WHERE tenant = :t"), {"t": slug}
        ).scalar_one()
    assert joined_groups == members
    cursor = last_id(engine, slug)

    # create 3, move 2 (department; one also changes job title), deactivate 1
    created = [fake.add_user(tid, new_person(n)) for n in range(3)]
    *movers, leaver = active_members(engine, slug, fake, doc)[:3]
    fake.update_user(tid, movers[0]["id"], department="Finance")
    fake.update_user(tid, movers[1]["id"], department="Finance", jobTitle="Controller")
    with engine.connect() as conn:  # ... and joins a group: still one mover event
        finance_id, finance = conn.execute(
            sa.text(
                "SELECT g.id, g.external_id FROM app.groups g WHERE g.tenant = :t"
                " AND g.source = 'm365' AND NOT EXISTS (SELECT 1 FROM app.group_members gm"
                " JOIN app.users u ON u.id = gm.user_id WHERE gm.group_id = g.id"
                " AND u.external_id = :u) ORDER BY g.id LIMIT 1"
            ),
            {"t": slug, "u": movers[1]["id"]},
        ).one()
    fake.add_members(tid, finance, [movers[1]["id"]])
    fake.update_user(tid, leaver["id"], accountEnabled=False)
    second = synced(instance, database_url, slug)

    found = events(engine, slug, cursor)
    kinds = by_type(found)
    assert {k: len(v) for k, v in kinds.items()} == {"joiner": 3, "mover": 2, "leaver": 1}
    assert {e["external_id"] for e in kinds["joiner"]} == set(created)
    assert {e["external_id"] for e in kinds["mover"]} == {m["id"] for m in movers}
    (gone,) = kinds["leaver"]
    assert gone["external_id"] == leaver["id"]
    assert gone["payload"]["user"]["is_active"] is False
    assert gone["payload"]["after"]["is_active"] is False
    assert gone["payload"]["groups_removed"]  # the leaver's memberships went with them
    for e in kinds["joiner"]:
        assert e["payload"]["before"] is None
        assert e["payload"]["after"]["department"] == "Onboarding"
    moved = {e["external_id"]: e["payload"] for e in kinds["mover"]}
    one, two = moved[movers[0]["id"]], moved[movers[1]["id"]]
    assert one["before"] == {"department": movers[0]["department"]}
    assert one["after"] == {"department": "Finance"}
    assert two["after"] == {"department": "Finance", "job_title": "Controller"}
    assert two["before"] == {
        "department": movers[1]["department"],
        "job_title": movers[1]["jobTitle"],
    }
    assert (one["groups_added"], two["groups_added"]) == ([], [finance_id])
    # the apply's transaction: its run, and the transaction's own time (now() of the audit)
    with engine.connect() as conn:
        applied_at = (
            conn.execute(
                sa.text("SELECT DISTINCT applied_at FROM sync.changes WHERE run_id = :r"),
                {"r": second},
            )
            .scalars()
            .all()
        )
    assert len(applied_at) == 1
    assert {e["sync_run"] for e in found} == {second}
    assert {e["created_at"] for e in found} == {applied_at[0].isoformat()}
    assert [e["id"] for e in found] == sorted(e["id"] for e in found)

    # an unchanged sync writes none
    synced(instance, database_url, slug)
    assert events(engine, slug, found[-1]["id"]) == []

    # the undo of the second sync writes the inverse events, in its own transaction
    with engine.begin() as conn:
        undo_id, _ = audit.undo(conn, slug, second)
    inverse = events(engine, slug, found[-1]["id"])
    kinds = by_type(inverse)
    assert {k: len(v) for k, v in kinds.items()} == {"leaver": 3, "mover": 2, "joiner": 1}
    assert {e["sync_run"] for e in inverse} == {undo_id}
    assert {e["external_id"] for e in kinds["leaver"]} == set(created)
    (back,) = kinds["joiner"]
    assert back["external_id"] == leaver["id"]
    assert back["payload"]["user"]["is_active"] is True
    assert back["payload"]["groups_added"] == gone["payload"]["groups_removed"]
    undone = {e["external_id"]: e["payload"] for e in kinds["mover"]}
    assert undone[movers[0]["id"]]["before"] == {"department": "Finance"}
    assert undone[movers[0]["id"]]["after"] == {"department": movers[0]["department"]}


def test_a_failed_apply_leaves_no_event_and_sends_no_notification(
    instance, database_url, engine, doc, fake
):
    slug = new_tenant(engine, "evf", doc, fake)
    listener = psycopg.connect(database_url, autocommit=True)
    listener.execute(f"LISTEN {outbox.CHANNEL}")
    # the sync's changes planned (the job up to the diff), applied, then rolled back
    result = materialise(instance, slug, job="test_sync", database_url=database_url)
    assert result.success
    with engine.connect() as conn:
        run_id = conn.execute(
            sa.text("SELECT max(id) FROM sync.runs WHERE tenant = :t"), {"t": slug}
        ).scalar_one()
    with engine.connect() as conn, conn.begin() as tx, db.tenant_lock(conn, slug):
        diff.apply_diff(conn, slug, run_id)
        assert outbox.run_counts(conn, slug, run_id)["joiner"] > 0  # written, uncommitted
        tx.rollback()
    assert events(engine, slug) == []
    assert not select.select([listener.fileno()], [], [], 0.5)[0]
    assert list(listener.notifies(timeout=0.1)) == []
    # the same apply committed: the events, and one notification naming the last id
    synced(instance, database_url, slug)
    found = events(engine, slug)
    assert found
    (note,) = list(listener.notifies(timeout=5, stop_after=1))
    assert note.channel == outbox.CHANNEL
    assert json.loads(note.payload) == {
        "tenant": slug,
        "run_id": found[-1]["sync_run"],
        "last_id": found[-1]["id"],
    }
    listener.close()


def test_events_follow_prints_each_event_as_its_transaction_commits(
    instance, database_url, engine, doc, fake, tmp_path, cli, monkeypatch
):
    slug = new_tenant(engine, "evw", doc, fake)
    env = {**os.environ, "SYNC_PIPELINE_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}
    # a long poll: what wakes it within the test's seconds is the commit's NOTIFY
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync_pipeline.cli", "events", slug, "--after", "0",
         "--follow", "--poll", "120"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        result = materialise(instance, slug, job="test_sync", database_url=database_url)
        assert result.success
        with engine.connect() as conn:
            run_id = conn.execute(
                sa.text("SELECT max(id) FROM sync.runs WHERE tenant = :t"), {"t": slug}
            ).scalar_one()
        time.sleep(3)  # the command is up and listening (it prints nothing: no events yet)
        with engine.connect() as conn, conn.begin(), db.tenant_lock(conn, slug):
            diff.apply_diff(conn, slug, run_id)
            written = sum(outbox.run_counts(conn, slug, run_id).values())
            with pytest.raises(queue.Empty):  # written, not committed: not printed
                lines.get(timeout=2)
        printed = [json.loads(lines.get(timeout=30)) for _ in range(written)]
        assert printed == events(engine, slug)  # every one, in order, once, schema-valid
        with pytest.raises(queue.Empty):
            lines.get(timeout=1)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, proc.stderr.read()
    # without --follow: what is there after the cursor, then exit 0
    cursor = printed[len(printed) // 2]["id"]
    done = subprocess.run(
        [sys.executable, "-m", "sync_pipeline.cli", "events", slug, "--after", str(cursor)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [json.loads(x) for x in done.stdout.splitlines()] == events(engine, slug, cursor)
    two = subprocess.run(
        [sys.executable, "-m", "sync_pipeline.cli", "events", slug, "--limit", "2"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert [json.loads(x) for x in two.stdout.splitlines()] == events(engine, slug)[:2]
    monkeypatch.setattr(eventscmd, "_PAGE", 7)  # page after page, nothing skipped or repeated
    paged = cli("events", slug)
    assert paged.exit_code == 0, paged.output
    assert [json.loads(x) for x in paged.output.splitlines()] == events(engine, slug)
    assert [json.loads(x) for x in cli("events", slug, "--limit", "9").output.splitlines()] == (
        events(engine, slug)[:9]
    )
    unknown = subprocess.run(
        [sys.executable, "-m", "sync_pipeline.cli", "events", "no-such-tenant"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert unknown.returncode == 2, unknown.stderr


def test_an_approval_makes_no_event_until_the_apply_that_carries_it_out(
    instance, database_url, engine, doc, fake
):
    # the safety limit holds two deactivations for a person's decision
    slug = new_tenant(engine, "eva", doc, fake, max_deactivations=1)
    synced(instance, database_url, slug)
    cursor = last_id(engine, slug)
    leavers = active_members(engine, slug, fake, doc)[:2]
    for person in leavers:
        fake.update_user(doc["tenant_id"], person["id"], accountEnabled=False)
    synced(instance, database_url, slug)
    assert events(engine, slug, cursor) == []  # held: nothing changed in the app
    with engine.begin() as conn:
        held = gate.withheld(conn, slug)
        decision = gate.decide(conn, slug, held, "approved", "test", "leavers confirmed")
    assert events(engine, slug, cursor) == []  # a decision changes no app row
    applied = synced(instance, database_url, slug)
    found = events(engine, slug, cursor)
    assert {(e["type"], e["external_id"]) for e in found} == {("leaver", p["id"]) for p in leavers}
    assert {e["sync_run"] for e in found} == {applied} and applied > decision
