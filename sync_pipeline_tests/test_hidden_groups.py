"""Hidden-membership groups (`visibility: HiddenMembership`): listing their members needs
Member.Read.Hidden. Without it the fake answers 403 to members reads and leaves the group's
`members@delta` out of a delta round; a sync then keeps the group's memberships as last read,
names the group and the permission (metadata, report, explain), and fails only when the group
decides who is in scope. Real Postgres, the fake Graph over HTTPS through msal."""

from __future__ import annotations

import secrets

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from sync_pipeline.defs.extract import FULL_READ_TAG
from sync_pipeline.explain import lookup as explain
from sync_pipeline.extract.extraction import extract
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.graph import GraphClient, GraphError
from sync_pipeline.graph.delta import DeltaRound
from sync_pipeline.registry import tenants
from sync_pipeline_tests.support.fakegraph import new_tenant, settings_for, start_fake
from sync_pipeline_tests.support.pipeline import materialise

HIDDEN = "Member.Read.Hidden"


@pytest.fixture(scope="module")
def doc() -> dict:
    return generate_tenant(
        name="northwind-hidden", users=60, seed=31, domain="northwind.example", hidden_groups=1
    )


@pytest.fixture(scope="module")
def hidden_id(doc) -> str:
    [gid] = [g["id"] for g in doc["groups"] if g.get("visibility") == "HiddenMembership"]
    return gid


@pytest.fixture(scope="module")
def fake(doc, tmp_path_factory):
    server = start_fake([doc], tmp_path_factory.mktemp("fakegraph-hidden"))
    yield server
    server.stop()


def run(instance, database_url: str, slug: str, job: str = "sync", **tags: str):
    return materialise(
        instance, slug, job=job, database_url=database_url, raise_on_error=False, tags=tags
    )


def staged_members(conn: sa.Connection, slug: str, group_id: str) -> set[str]:
    sql = "SELECT member_id FROM staging.group_members WHERE tenant = :t AND group_id = :g"
    return set(conn.execute(sa.text(sql), {"t": slug, "g": group_id}).scalars())


def app_members(engine: sa.Engine, slug: str, group_external_id: str) -> set[str]:
    """External ids of the users in the app group synced from this Graph group."""
    sql = (
        "SELECT u.external_id FROM app.group_members m JOIN app.groups g ON g.id = m.group_id "
        "JOIN app.users u ON u.id = m.user_id "
        "WHERE m.tenant = :t AND g.external_id = :g"
    )
    with engine.connect() as conn:
        return set(conn.execute(sa.text(sql), {"t": slug, "g": group_external_id}).scalars())


def pairs(engine: sa.Engine, slug: str) -> set[tuple[str, str]]:
    """Every (Graph group, Graph user) membership the app holds for the tenant."""
    sql = (
        "SELECT g.external_id, u.external_id FROM app.group_members m "
        "JOIN app.groups g ON g.id = m.group_id JOIN app.users u ON u.id = m.user_id "
        "WHERE m.tenant = :t"
    )
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.text(sql), {"t": slug})}


def app_state(engine: sa.Engine, slug: str) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            table: sorted(
                tuple(map(str, r))
                for r in conn.execute(
                    sa.text(f"SELECT * FROM {table} WHERE tenant = :t"), {"t": slug}
                )
            )
            for table in ("app.users", "app.groups", "app.group_members")
        }


def members_meta(result) -> dict:
    [mat] = [
        m
        for m in result.asset_materializations_for_node("graph_directory")
        if m.asset_key == dg.AssetKey("graph_group_members")
    ]
    return mat.metadata


def test_the_fake_refuses_hidden_members_without_the_permission(fake, doc, hidden_id):
    settings = settings_for("hid-fake", doc, fake)
    client = GraphClient(settings)
    http = requests.Session()
    http.trust_env = False
    http.verify = str(fake.ca_path)
    auth = {"Authorization": f"Bearer {client.token()}"}
    base = f"{fake.base_url}/v1.0/groups/{hidden_id}"
    assert http.get(f"{base}/members", headers=auth).status_code == 200  # granted by default
    fake.withdraw_permissions(doc["tenant_id"], [HIDDEN])
    try:
        for path in ("members", "transitiveMembers"):
            denied = http.get(f"{base}/{path}?$select=id", headers=auth)
            assert denied.status_code == 403
            assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
            assert HIDDEN not in denied.json()["error"]["message"]  # Graph does not say
        other = next(g["id"] for g in doc["groups"] if doc["members"][g["id"]])
        assert http.get(f"{fake.base_url}/v1.0/groups/{other}/members", headers=auth).ok
        # a groups delta round with members: the hidden group comes, its members@delta not
        entries = [
            g
            for page in DeltaRound(
                client, "/groups/delta", {"$select": "id,displayName,visibility,members"}
            )
            for g in page
        ]
        hidden = [g for g in entries if g["id"] == hidden_id]
        assert hidden and all("members@delta" not in g for g in hidden)
        assert any(g.get("members@delta") for g in entries if g["id"] == other)
    finally:
        fake.grant_permissions(doc["tenant_id"], [HIDDEN])
    assert http.get(f"{base}/members", headers=auth).status_code == 200


def test_an_unreadable_group_keeps_its_memberships_and_is_named(
    instance, database_url, engine, doc, fake, hidden_id, smtp_server
):
    slug = new_tenant(engine, "hid", doc, fake, admin_email="admin@northwind.example")
    assert run(instance, database_url, slug).success
    members = set(doc["members"][hidden_id])
    assert app_members(engine, slug, hidden_id) == members
    before = app_state(engine, slug)

    # Graph changes the group while the app may not read it: one member leaves
    leaver = sorted(members)[0]
    fake.remove_members(doc["tenant_id"], hidden_id, [leaver])
    fake.withdraw_permissions(doc["tenant_id"], [HIDDEN])
    try:
        incremental = run(instance, database_url, slug)
        assert incremental.success  # the group does not decide the scope
        assert app_members(engine, slug, hidden_id) == members  # kept as last read
        assert app_state(engine, slug) == before  # nobody deactivated, nothing removed
        meta = members_meta(incremental)
        assert meta["unreadable_groups"].value == 1
        listed = meta["unreadable_groups_list"].value
        assert "'Confidential Board'" in listed and hidden_id in listed
        assert f"grant {HIDDEN}; memberships kept as last read" in listed

        # a full read clears staging.group_members: the group's rows come back as last read
        full = run(instance, database_url, slug, **{FULL_READ_TAG: "true"})
        assert full.success
        assert members_meta(full)["unreadable_groups"].value == 1
        assert app_members(engine, slug, hidden_id) == members
        with engine.connect() as conn:
            staged = staged_members(conn, slug, hidden_id)
            assert staged == members
            # explain, for a member of the group
            stored = tenants.get(conn, slug).settings
            [x] = explain.lookup(conn, stored, leaver)
            assert x.unreadable == [
                f"members of group 'Confidential Board' ({hidden_id}) could not be read: "
                f"grant {HIDDEN}; memberships kept as last read"
            ]
            outsider = next(u["id"] for u in doc["users"] if u["id"] not in members)
            assert explain.lookup(conn, stored, outsider)[0].unreadable == []

        # the test sync's report names the group and the permission
        assert run(instance, database_url, slug, "test_sync").success
        [(_, msg)] = smtp_server.messages
        plain = msg.get_body(("plain",)).get_content()
        assert "Confidential Board" in plain and f"grant {HIDDEN}" in plain
        assert app_state(engine, slug) == before
    finally:
        fake.grant_permissions(doc["tenant_id"], [HIDDEN])
        fake.add_members(doc["tenant_id"], hidden_id, [leaver])

    # with the permission granted, the next sync reads the members again
    fake.remove_members(doc["tenant_id"], hidden_id, [leaver])
    try:
        again = run(instance, database_url, slug)
        assert again.success
        assert members_meta(again)["unreadable_groups"].value == 0
        assert app_members(engine, slug, hidden_id) == members - {leaver}
        # ... converging to what a clean first sync of the same directory gives
        clean = new_tenant(engine, "hid", doc, fake, admin_email="admin@northwind.example")
        assert run(instance, database_url, clean).success
        assert pairs(engine, slug) == pairs(engine, clean)
    finally:
        fake.add_members(doc["tenant_id"], hidden_id, [leaver])


def test_an_unreadable_scope_group_fails_the_sync_and_changes_nothing(
    instance, database_url, engine, doc, fake, hidden_id
):
    slug = new_tenant(
        engine, "hid", doc, fake, user_scope="selected_groups", scope_group_ids=[hidden_id]
    )
    assert run(instance, database_url, slug).success
    before = app_state(engine, slug)
    with engine.connect() as conn:
        active = conn.execute(
            sa.text("SELECT external_id FROM app.users WHERE tenant = :t AND is_active"),
            {"t": slug},
        ).scalars()
        assert set(active) <= set(doc["members"][hidden_id])  # only the scope group's members
    fake.remove_members(doc["tenant_id"], hidden_id, [doc["members"][hidden_id][0]])
    fake.withdraw_permissions(doc["tenant_id"], [HIDDEN])
    try:
        result = run(instance, database_url, slug)
    finally:
        fake.grant_permissions(doc["tenant_id"], [HIDDEN])
        fake.add_members(doc["tenant_id"], hidden_id, [doc["members"][hidden_id][0]])
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "directory_snapshot"
    message = failure.step_failure_data.error.message
    assert f"tenant {slug}" in message and "selected_groups" in message
    assert "'Confidential Board'" in message and f"grant {HIDDEN}" in message
    assert app_state(engine, slug) == before
    assert run(instance, database_url, slug).success  # granted again: syncs


def test_a_group_nested_under_a_scope_group_decides_the_scope_too(
    instance, database_url, engine, doc, fake, hidden_id
):
    parent = fake.add_group(
        doc["tenant_id"],
        {"displayName": "Leadership", "groupTypes": [], "securityEnabled": True},
        [hidden_id],
    )
    try:
        slug = new_tenant(
            engine, "hid", doc, fake, user_scope="selected_groups", scope_group_ids=[parent]
        )
        assert run(instance, database_url, slug).success
        before = app_state(engine, slug)
        fake.withdraw_permissions(doc["tenant_id"], [HIDDEN])
        try:
            result = run(instance, database_url, slug)
        finally:
            fake.grant_permissions(doc["tenant_id"], [HIDDEN])
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        assert "'Confidential Board'" in failure.step_failure_data.error.message
        assert app_state(engine, slug) == before
    finally:
        fake.delete_group(doc["tenant_id"], parent)


@pytest.mark.parametrize("max_users", [0, 10_000], ids=["batched", "delta-members"])
def test_both_read_paths_keep_an_unreadable_group(engine, doc, fake, hidden_id, max_users):
    """Large tenants read members in batches, small ones in the delta round: the same rule."""
    slug = f"hid-{secrets.token_hex(4)}"
    client = GraphClient(settings_for(slug, doc, fake))
    with engine.begin() as conn:
        first = extract(client, conn, slug, delta_members_max_users=max_users)
    assert not first.unreadable
    fake.withdraw_permissions(doc["tenant_id"], [HIDDEN])
    try:
        for full in (True, False):
            with engine.begin() as conn:
                result = extract(client, conn, slug, full=full, delta_members_max_users=max_users)
                rows = conn.execute(
                    sa.text(
                        "SELECT group_id, permission, status, code FROM staging.unreadable_groups "
                        "WHERE tenant = :t"
                    ),
                    {"t": slug},
                ).all()
                staged = staged_members(conn, slug, hidden_id)
            assert set(result.unreadable) == {hidden_id}
            assert result.unreadable[hidden_id]["permission"] == HIDDEN
            assert rows == [(hidden_id, HIDDEN, 403, "Authorization_RequestDenied")]
            assert staged == set(doc["members"][hidden_id])
    finally:
        fake.grant_permissions(doc["tenant_id"], [HIDDEN])
    with engine.begin() as conn:
        assert not extract(client, conn, slug, delta_members_max_users=max_users).unreadable


def test_the_diff_never_removes_memberships_of_an_unreadable_group(engine, tenant_slug):
    """Even with nothing staged for it, an unreadable group and every group above it keep
    their memberships; a user who leaves the sync still loses them."""
    from sync_pipeline_tests.support.converge import BASE, E, changes, converge, state, sync

    converge(engine, tenant_slug, BASE)
    lost = {**BASE, "members": {"sales": ["ann", "emea"], "emea": []}}  # emea read as empty
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO staging.unreadable_groups (tenant, group_id, permission) "
                "VALUES (:t, 'emea', :p)"
            ),
            {"t": tenant_slug, "p": HIDDEN},
        )
    try:
        assert changes(sync(engine, tenant_slug, lost)) == {}  # EMEA/bob and Sales/bob kept
        gone = {**lost, "users": [u for u in BASE["users"] if u["id"] != "bob"]}
        # one of three users leaving is over the default limit: allowed here, the gate's
        # holding is test_gate.py's
        planned = changes(sync(engine, tenant_slug, gone, max_deactivation_percent=50))
        assert planned == {"user_deactivate": 1, "membership_remove": 2}  # bob left Graph
        assert {m for m in state(engine, tenant_slug)[2] if m[1] == E("bob")} == set()
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM staging.unreadable_groups WHERE tenant = :t"),
                {"t": tenant_slug},
            )
    converge(engine, tenant_slug, BASE)  # readable again: bob comes back, memberships too


def test_the_403_hint_names_member_read_hidden_for_member_reads(fake, doc, hidden_id):
    from sync_pipeline.graph.errors import permission_hint

    hint = permission_hint(f"/v1.0/groups/{hidden_id}/members", "application")
    assert "GroupMember.Read.All" in hint and HIDDEN in hint and "admin consent" in hint
    assert HIDDEN in permission_hint("/v1.0/groups/x/transitiveMembers", "delegated")
    assert HIDDEN not in permission_hint("/v1.0/groups/delta", "application")
    assert HIDDEN not in permission_hint("/v1.0/users", "application")
    # a members read Graph refuses, through the client: the error says what to grant
    client = GraphClient(settings_for("hid-hint", doc, fake))
    fake.withdraw_permissions(doc["tenant_id"], [HIDDEN])
    try:
        with pytest.raises(GraphError, match=HIDDEN) as caught:
            client.get(f"/groups/{hidden_id}/members?$select=id")
    finally:
        fake.grant_permissions(doc["tenant_id"], [HIDDEN])
    assert caught.value.status == 403 and caught.value.code == "Authorization_RequestDenied"
