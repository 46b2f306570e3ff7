"""Mailbox types (`exclude_mailbox_types`): Graph's `mailboxSettings/userPurpose` read through
`$batch` only for the people who are due (no type yet, new or changed), kept in staging, and
people whose type is listed left out with the reason `mailbox_type`; a type Graph cannot give
(404, no mailbox) keeps the person. Real Postgres, the fake Graph over HTTPS through msal."""

from __future__ import annotations

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from sync_pipeline.explain import lookup as explain
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.graph import GraphClient, health
from sync_pipeline.load import preview
from sync_pipeline.registry import tenants
from sync_pipeline_tests.support.fakegraph import new_tenant, settings_for, start_fake
from sync_pipeline_tests.support.pipeline import materialise

PERMISSION = "MailboxSettings.Read"
PURPOSE = "/users/{}/mailboxSettings/userPurpose"


@pytest.fixture(scope="module")
def doc() -> dict:
    # 300 users: 6 non-person mailboxes (4 shared, a room, an equipment), guests, members
    # without a mailbox
    return generate_tenant(name="northwind-mbx", users=300, seed=11, domain="northwind.example")


@pytest.fixture(scope="module")
def fake(doc, tmp_path_factory):
    server = start_fake([doc], tmp_path_factory.mktemp("fakegraph-mailbox"))
    yield server
    server.stop()


def by_purpose(doc: dict, purpose: str) -> list[str]:
    return sorted(uid for uid, p in doc["mailbox_purposes"].items() if p == purpose)


def no_mailbox(doc: dict) -> set[str]:
    """The users the fake has no mailbox for: guests and members without a mail address."""
    return {
        u["id"]
        for u in doc["users"]
        if u["id"] not in doc["mailbox_purposes"] and (u["userType"] == "Guest" or not u["mail"])
    }


def users_meta(result) -> dict[str, object]:
    [mat] = [
        m
        for m in result.asset_materializations_for_node("graph_directory")
        if m.asset_key == dg.AssetKey("graph_users")
    ]
    return {k: v.value for k, v in mat.metadata.items()}


def snapshot(engine: sa.Engine, slug: str) -> dict[str, tuple[bool, list[str]]]:
    sql = "SELECT graph_id, included, reasons FROM sync.snapshot_users WHERE tenant = :t"
    with engine.connect() as conn:
        return {
            r.graph_id: (r.included, list(r.reasons))
            for r in conn.execute(sa.text(sql), {"t": slug})
        }


def run(instance, database_url: str, slug: str, job: str = "sync"):
    result = materialise(instance, slug, job=job, database_url=database_url, raise_on_error=False)
    assert result.success
    return result


def http(fake, client: GraphClient) -> tuple[requests.Session, dict[str, str]]:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(fake.ca_path)
    return session, {"Authorization": f"Bearer {client.token()}"}


def test_the_fake_answers_user_purpose_as_graph_does(fake, doc):
    client = GraphClient(settings_for("mbx-fake", doc, fake))
    session, auth = http(fake, client)
    [room] = by_purpose(doc, "room")
    guest = next(u["id"] for u in doc["users"] if u["userType"] == "Guest")
    member = next(
        u["id"]
        for u in doc["users"]
        if u["mail"] and u["userType"] == "Member" and u["id"] not in doc["mailbox_purposes"]
    )
    answer = session.get(f"{fake.base_url}/v1.0{PURPOSE.format(room)}", headers=auth)
    assert answer.status_code == 200
    assert answer.json() == {
        "@odata.context": f"{fake.base_url}/v1.0/$metadata#users('{room}')/mailboxSettings/"
        "userPurpose",
        "value": "room",
    }
    assert answer.headers["x-ms-resource-unit"] == "1"
    whole = session.get(f"{fake.base_url}/v1.0/users/{member}/mailboxSettings", headers=auth)
    assert whole.json()["userPurpose"] == {"value": "user"}
    missing = session.get(f"{fake.base_url}/v1.0{PURPOSE.format(guest)}", headers=auth)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
    # in a $batch, each item answered on its own
    answers = client.batch({"a": PURPOSE.format(room), "b": PURPOSE.format(guest)})
    assert answers["a"] == (200, answers["a"][1]) and answers["a"][1]["value"] == "room"
    assert answers["b"][0] == 404
    # without MailboxSettings.Read: 403 ErrorAccessDenied (User.Read.All does not do)
    fake.withdraw_permissions(doc["tenant_id"], [PERMISSION])
    try:
        fresh = GraphClient(settings_for("mbx-fake", doc, fake))
        session, auth = http(fake, fresh)
        denied = session.get(f"{fake.base_url}/v1.0{PURPOSE.format(room)}", headers=auth)
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "ErrorAccessDenied"
        assert session.get(f"{fake.base_url}/v1.0/users/{room}", headers=auth).ok
    finally:
        fake.grant_permissions(doc["tenant_id"], [PERMISSION])


def test_the_permission_is_needed_only_with_the_setting(fake, doc):
    fake.withdraw_permissions(doc["tenant_id"], [PERMISSION])
    try:
        plain = GraphClient(settings_for("mbx-perm", doc, fake))
        health.require_permissions(plain)  # not needed: nothing raised
        wanted = GraphClient(settings_for("mbx-perm", doc, fake, exclude_mailbox_types=["shared"]))
        with pytest.raises(health.MissingPermission, match=r"MailboxSettings\.Read") as exc:
            health.require_permissions(wanted)
        assert "exclude_mailbox_types: shared" in str(exc.value)
    finally:
        fake.grant_permissions(doc["tenant_id"], [PERMISSION])


def test_listed_mailbox_types_are_left_out_and_read_once(
    instance, database_url, engine, doc, fake, smtp_server
):
    shared, [room], [equipment] = (by_purpose(doc, p) for p in ("shared", "room", "equipment"))
    # a licensed shared mailbox (over 50 GB needs one) is still a shared mailbox
    licensed_shared = shared[0]
    sku = next(u["assignedLicenses"][0] for u in doc["users"] if u["assignedLicenses"])
    fake.update_user(doc["tenant_id"], licensed_shared, assignedLicenses=[sku])
    slug = new_tenant(
        engine,
        "mbx",
        doc,
        fake,
        exclude_mailbox_types=["shared", "room"],
        admin_email="admin@northwind.example",
    )
    first = users_meta(run(instance, database_url, slug))
    staged = len(doc["users"])
    unreadable = no_mailbox(doc)
    assert first["mailbox_types"] == "shared, room"
    assert first["purpose_requests"] == staged  # everyone, once
    assert first["purpose_batches"] == -(-staged // 20)
    assert first["purposes_unreadable"] == len(unreadable)
    assert first["purposes_read"] == staged - len(unreadable)
    assert first["purposes_skipped_known"] == 0
    assert first["purposes_type_room"] == 1 and first["purposes_type_equipment"] == 1

    rows = snapshot(engine, slug)
    for uid in [*shared, room]:
        assert "mailbox_type" in rows[uid][1] and not rows[uid][0], uid
    assert "mailbox_type" not in rows[equipment][1]  # not listed
    # nobody else is left out for their mailbox, licensed or not; nobody without one either
    left_out = {uid for uid, (_, reasons) in rows.items() if "mailbox_type" in reasons}
    assert left_out == {*shared, room}
    licensed = {u["id"] for u in doc["users"] if u["assignedLicenses"]} - {licensed_shared}
    # licensed people with no other reason are synced; the licensed shared mailbox is not
    assert all(rows[uid][0] for uid in licensed if not rows[uid][1])
    assert "mailbox_type" in rows[licensed_shared][1] and not rows[licensed_shared][0]
    kept = [uid for uid in unreadable if rows[uid][0]]
    assert kept, "some people without a mailbox are synced"
    with engine.connect() as conn:
        app = set(
            conn.execute(
                sa.text("SELECT external_id FROM app.users WHERE tenant = :t AND is_active"),
                {"t": slug},
            ).scalars()
        )
    assert not app & {*shared, room} and set(kept) <= app

    # a second sync over the unchanged directory asks for nobody
    second = users_meta(run(instance, database_url, slug))
    assert second["purpose_requests"] == 0 and second["purpose_batches"] == 0
    assert second["purposes_skipped_known"] == staged

    # a person converted to a shared mailbox (their licence removed with it): asked again,
    # alone, and left out by the incremental transform
    convert = sorted(licensed & app)[0]
    fake.set_mailbox_purpose(doc["tenant_id"], convert, "shared")
    fake.update_user(doc["tenant_id"], convert, assignedLicenses=[])
    third = run(instance, database_url, slug)
    meta = users_meta(third)
    assert meta["purpose_requests"] == 1 and meta["purposes_type_shared"] == 1
    [snap] = [
        m
        for m in third.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey("snapshot_users")
    ]
    assert snap.materialization.metadata["transform_path"].value == "incremental"
    assert "mailbox_type" in snapshot(engine, slug)[convert][1]

    # a run of one person reads their type too (when due), and only theirs
    person = sorted(licensed & app - {convert})[0]
    upn = next(u["userPrincipalName"] for u in doc["users"] if u["id"] == person)
    fake.set_mailbox_purpose(doc["tenant_id"], person, "room")
    fake.update_user(doc["tenant_id"], person, displayName="Training Room 2")
    one = materialise(
        instance,
        slug,
        database_url=database_url,
        raise_on_error=False,
        run_config={"ops": {"graph_directory": {"config": {"user": upn}}}},
    )
    assert one.success
    [mat] = [
        m
        for m in one.asset_materializations_for_node("graph_directory")
        if m.asset_key == dg.AssetKey("graph_users")
    ]
    assert mat.metadata["person_mailbox_type"].value == "room"
    assert "mailbox_type" in snapshot(engine, slug)[person][1]

    # explain says why, naming the setting; a person without a mailbox is kept, and says so
    with engine.connect() as conn:
        stored = tenants.get(conn, slug).settings
        [x] = explain.lookup(conn, stored, room)
        assert not x.included
        [sentence] = [s for s in x.sentences if s.startswith("mailbox_type")]
        assert "'room'" in sentence and "exclude_mailbox_types" in sentence
        [y] = explain.lookup(conn, stored, kept[0])
        assert y.included and "MailboxNotEnabledForRESTAPI" in (y.mailbox_sentence or "")

        # turning on equipment too is previewed like any change of scope
        impact = preview.compute(
            engine,
            stored.model_copy(update={"exclude_mailbox_types": ["shared", "room", "equipment"]}),
        )
    assert impact.mailbox_types_unread == 0
    if equipment in app:  # an active equipment mailbox would now leave
        assert impact.leavers_total >= 1
    else:
        assert impact.leavers_total == 0

    # the test sync's report lists them with their type
    run(instance, database_url, slug, "test_sync")
    [(_, msg)] = smtp_server.messages
    plain = msg.get_body(("plain",)).get_content()
    assert "mailbox_type (room)" in plain or "mailbox_type (shared)" in plain


def test_a_type_not_read_yet_is_said_by_the_preview(instance, database_url, engine, doc, fake):
    slug = new_tenant(engine, "mbx", doc, fake)
    meta = users_meta(run(instance, database_url, slug))
    assert meta["mailbox_types"].startswith("not read")
    assert "purpose_requests" not in meta
    with engine.connect() as conn:
        stored = tenants.get(conn, slug).settings
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM staging.user_purposes WHERE tenant = :t"), {"t": slug}
            ).scalar_one()
            == 0
        )
    candidate = stored.model_copy(update={"exclude_mailbox_types": ["shared"]})
    assert preview.scope_changes(stored, candidate) == ["exclude_mailbox_types"]
    impact = preview.compute(engine, candidate)
    assert impact.mailbox_types_unread == len(doc["users"])


def test_outlook_runs_four_requests_of_an_app_at_once(doc, tmp_path):
    """throttling-limits.md: Outlook executes at most 4 requests of an app at once, a batch's
    4 at a time: a second concurrent batch of userPurpose reads is throttled (inner 429,
    424 overall) and goes through on retry; one batch at a time, as the extraction sends
    them, never is."""
    from concurrent.futures import ThreadPoolExecutor

    from sync_pipeline.extract import pager

    slow = start_fake([doc], tmp_path / "fake", latency=0.3, outlook_retry_after=0.1)
    try:
        client = GraphClient(settings_for("mbx-conc", doc, slow))
        ids = [u["id"] for u in doc["users"]][:40]
        client.token()
        slow.reset_stats()
        for chunk in (ids[:20], ids[20:]):
            pager.purposes_batch(client, chunk)
        assert slow.stats["throttled_outlook_concurrency"] == 0
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(lambda c: pager.purposes_batch(client, c), (ids[:20], ids[20:]))
            )
        assert sorted(a[0] for got in answers for a in got) == sorted(ids)  # all answered
        stats = slow.stats
        assert stats["throttled_outlook_concurrency"] >= 1
        assert stats["status"].get("424", 0) >= 1  # the throttled batch, every item still inside
        assert client.stats.as_metadata()["graph_throttled"] >= 1
        # plain requests: five at once, one over the limit
        session, auth = http(slow, client)
        url = f"{slow.base_url}/v1.0{PURPOSE.format(ids[0])}"
        with ThreadPoolExecutor(5) as pool:
            codes = sorted(pool.map(lambda _: session.get(url, headers=auth).status_code, range(5)))
        assert codes.count(429) >= 1 and codes.count(200) >= 4
    finally:
        slow.stop()


def test_turning_it_on_is_a_change_of_scope_like_any_rule(
    instance, database_url, engine, doc, fake, cli
):
    """`tenant set` previews it and saves a new version; the next sync reads the types and
    deactivates the listed mailboxes through the diff and the audit; over the safety limit
    they are held like any mass deactivation."""
    now = fake.tenant(doc["tenant_id"])  # as the tests before left it (module-scoped fake)
    targets = {*by_purpose(now, "shared"), *by_purpose(now, "room")}
    active = {u["id"] for u in now["users"] if u["id"] in targets and u["accountEnabled"]}
    assert active, "the generated tenant has active shared or room mailboxes"
    slug = new_tenant(engine, "mbx", doc, fake)
    held = new_tenant(engine, "mbx", doc, fake, max_deactivations=0)
    for tenant in (slug, held):
        run(instance, database_url, tenant)

    saved = cli("tenant", "set", slug, "exclude_mailbox_types=shared,room", "--yes")
    assert saved.exit_code == 0, saved.output
    assert "with the new exclude_mailbox_types" in saved.output
    assert "is not read yet" in " ".join(saved.output.split())  # read by the next sync
    assert "version 2" in saved.output
    run(instance, database_url, slug)
    sql = "SELECT external_id FROM app.users WHERE tenant = :t AND NOT is_active"
    with engine.connect() as conn:
        inactive = set(conn.execute(sa.text(sql), {"t": slug}).scalars())
    assert active <= inactive
    address = next(u["mail"] for u in now["users"] if u["id"] in active)
    history = cli("history", slug, "--user", address)
    assert history.exit_code == 0, history.output
    assert "deactivat" in history.output, history.output

    assert cli("tenant", "set", held, "exclude_mailbox_types=shared,room", "--yes").exit_code == 0
    run(instance, database_url, held)
    with engine.connect() as conn:
        assert not active & set(conn.execute(sa.text(sql), {"t": held}).scalars())
    listed = cli("held", held)
    assert f"{len(active)} withheld change(s)" in listed.output, listed.output
    assert "held (over" in listed.output


def test_a_user_purpose_read_costs_one_unit_on_both_sides():
    """Not an identity path (Outlook limits it per mailbox instead): both the client's budget
    and the fake charge it 1 RU of the directory budget, never less than Graph."""
    from sync_pipeline.fakegraph import costs as fake_costs
    from sync_pipeline.graph import budget

    path = PURPOSE.format("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    assert budget.cost("GET", path) == 1
    assert fake_costs.cost("GET", path, {}) == 1
