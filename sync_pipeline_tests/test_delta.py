"""Delta rounds against the fake Graph over HTTPS and real Postgres: Graph's "sync from now"
(`$deltatoken=latest`), updated objects carrying only their changed properties
(`Prefer: return=minimal`), and a large tenant's incremental read applying `members@delta`
pairs to staging exactly as a fresh full read would stage them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from sync_pipeline.extract import pager
from sync_pipeline.extract.extraction import GROUPS_MEMBERS, USERS_LINK, extract
from sync_pipeline.extract.staging import (
    PROPERTIES,
    StagingWriter,
    group_row,
    staged_objects,
    user_row,
)
from sync_pipeline.graph import GraphClient
from sync_pipeline.graph.delta import DeltaExpired, DeltaRound, latest_link
from sync_pipeline_tests.support.fakegraph import settings_for, start_fake

USER_TYPE = "#microsoft.graph.user"
BATCH_MEMBERS = "GET /v1.0/groups/{id}/members (batch)"
# Every staged column but the tenant, in a stable order: staging compared value for value.
SNAPSHOT = {
    "users": "SELECT * FROM staging.users WHERE tenant = :t ORDER BY id",
    "groups": "SELECT * FROM staging.groups WHERE tenant = :t ORDER BY id",
    "group_members": "SELECT * FROM staging.group_members WHERE tenant = :t "
    "ORDER BY group_id, member_id",
    "user_licences": "SELECT * FROM staging.user_licences WHERE tenant = :t "
    "ORDER BY user_id, sku_id",
    # links to a soft-deleted manager stay staged for its restore (the transform skips them)
    "user_managers": "SELECT * FROM staging.user_managers m WHERE tenant = :t AND EXISTS "
    "(SELECT 1 FROM staging.users u WHERE u.tenant = :t AND u.id = m.manager_id) "
    "ORDER BY user_id",
    "subscribed_skus": "SELECT * FROM staging.subscribed_skus WHERE tenant = :t ORDER BY sku_id",
}


@pytest.fixture(scope="module")
def tailspin(tmp_path_factory):
    """A tenant of its own (this module mutates it), with short delta pages so that rounds
    span several pages and a group's members@delta several entries."""
    from sync_pipeline.fakegraph import generate_tenant

    doc = generate_tenant(name="tailspin-test", users=300, seed=23, domain="tailspin.example")
    fake = start_fake(
        [doc],
        tmp_path_factory.mktemp("tailspin"),
        delta_page_size=10,
        delta_member_page_size=3,
        seed=5,
    )
    yield fake, doc
    fake.stop()


def snapshot(engine: sa.Engine, tenant: str) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            name: [tuple(row)[1:] for row in conn.execute(sa.text(sql), {"t": tenant})]
            for name, sql in SNAPSHOT.items()
        }


def links(engine: sa.Engine, tenant: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT entity, delta_link FROM sync.delta_state WHERE tenant = :t"),
            {"t": tenant},
        )
        return dict(rows.all())


def run(engine, settings, *, full: bool = False, batched: bool = True):
    """One extraction; `batched`: the large-tenant path (members read in $batches) at any size."""
    client = GraphClient(settings)
    with engine.begin() as conn:
        result = extract(
            client,
            conn,
            settings.slug,
            full=full,
            workers=4,
            delta_members_max_users=0 if batched else 10**9,
        )
    return result, client.stats


def fresh(engine, fake, doc, slug: str) -> dict[str, list[tuple]]:
    """What a first sync of the tenant as it is now stages."""
    result, _ = run(engine, settings_for(slug, doc, fake))
    assert result.mode == {"users": "full", "groups": "full"}
    return snapshot(engine, slug)


def test_staged_rows_read_back_as_the_graph_objects_they_came_from(engine, tailspin, tenant_slug):
    """The merge of a partial delta item starts from the staged row turned back into a Graph
    object: staged again, it must give the very same row."""
    _, doc = tailspin
    users = [{**u, "onPremisesSyncEnabled": True} for u in doc["users"][:30]]
    copy = f"{tenant_slug}-copy"
    with engine.begin() as conn:
        first, second = StagingWriter(conn, tenant_slug), StagingWriter(conn, copy)
        first.copy("users", [user_row(tenant_slug, u) for u in users])
        first.copy("groups", [group_row(tenant_slug, g) for g in doc["groups"]])
        for table, objs in (("users", users), ("groups", doc["groups"])):
            back = staged_objects(conn, tenant_slug, table, [o["id"] for o in objs])
            assert set(back) == {o["id"] for o in objs}
            assert all(set(o) == set(PROPERTIES[table]) for o in back.values())
            to_row = user_row if table == "users" else group_row
            second.copy(table, [to_row(copy, o) for o in back.values()])
    staged, again = snapshot(engine, tenant_slug), snapshot(engine, copy)
    assert staged["users"] == again["users"] and len(staged["users"]) == len(users)
    assert staged["groups"] == again["groups"] and len(staged["groups"]) == len(doc["groups"])


def test_fake_latest_link_then_only_later_changes_with_minimal_properties(tailspin, tenant_slug):
    fake, doc = tailspin
    tid = doc["tenant_id"]
    client = GraphClient(settings_for(tenant_slug, doc, fake))
    now = fake.tenant(tid)
    select = pager.USER_SELECT.split(",")
    # u[1]: a user with a property never set (Graph leaves it out of a plain delta item)
    u = [x["id"] for x in sorted(now["users"], key=lambda x: None not in map(x.get, select))]
    members = now["members"]
    g_add, g_out, g_renamed = (g["id"] for g in now["groups"][:3])
    fake.update_user(tid, u[0], jobTitle="Before the link")  # not reported: made before
    user_link = latest_link(client, "/users/delta", pager.USER_DELTA_SELECT)
    no_manager_link = latest_link(client, "/users/delta", pager.USER_SELECT)
    group_link = latest_link(client, "/groups/delta", f"{pager.GROUP_SELECT},members")
    assert list(DeltaRound(client, user_link)) == [[]]  # nothing changed since

    fake.update_user(tid, u[1], jobTitle="After the link", department=None)
    fake.set_manager(tid, u[2], u[3])
    new = fake.add_user(tid, {"userPrincipalName": "late@tailspin.example", "displayName": "L"})
    joiner = next(x for x in u if x not in members[g_add])
    leaver = members[g_out][0]
    fake.add_members(tid, g_add, [joiner])
    fake.remove_members(tid, g_out, [leaver])
    fake.update_group(tid, g_renamed, description="Renamed after the link")

    users = {o["id"]: o for page in DeltaRound(client, user_link) for o in page}
    assert set(users) == {u[1], u[2], new}
    # an update: only what changed (a property set to null included); a new user: whole
    assert users[u[1]] == {"id": u[1], "jobTitle": "After the link", "department": None}
    # its manager changed, no property: only manager@delta says so
    assert users[u[2]] == {"id": u[2], "manager@delta": [{"@odata.type": USER_TYPE, "id": u[3]}]}
    assert set(users[new]) == set(select)
    # without `manager` in the $select a manager change is invisible (docs/graph.md)
    blind = {o["id"] for page in DeltaRound(client, no_manager_link) for o in page}
    assert blind == {u[1], new}
    groups = {o["id"]: o for page in DeltaRound(client, group_link) for o in page}
    assert set(groups) == {g_add, g_out, g_renamed}
    assert groups[g_add] == {
        "id": g_add,
        "members@delta": [{"@odata.type": USER_TYPE, "id": joiner}],
    }
    assert groups[g_out]["members@delta"] == [
        {"@odata.type": USER_TYPE, "id": leaver, "@removed": {"reason": "deleted"}}
    ]
    assert groups[g_renamed] == {"id": g_renamed, "description": "Renamed after the link"}

    # Without `Prefer: return=minimal` Graph sends every selected property but those never set
    plain = client.get(user_link)["value"]
    item = next(o for o in plain if o["id"] == u[1])
    user = next(x for x in fake.tenant(tid)["users"] if x["id"] == u[1])
    ever_set = {k for k in select if user.get(k) is not None}
    assert item["department"] is None and item["jobTitle"] == "After the link"
    assert set(item) - {"manager@delta"} == ever_set | {"department"} and set(item) < {
        *select,
        "manager@delta",
    }

    bad = client.request("GET", "/users/delta?$deltatoken=latest&$top=5", ok=(400,))
    assert bad.json()["error"]["code"] == "Request_BadRequest"
    fake.expire_delta_tokens(tid)
    with pytest.raises(DeltaExpired):
        list(DeltaRound(client, group_link))


def test_large_tenant_incremental_applies_members_delta_like_a_fresh_read(
    engine, tailspin, tenant_slug
):
    fake, doc = tailspin
    tid = doc["tenant_id"]
    settings = settings_for(tenant_slug, doc, fake)
    result, stats = run(engine, settings)
    assert result.mode == {"users": "full", "groups": "full"} and stats.batches > 0
    assert set(links(engine, tenant_slug)) == {USERS_LINK, GROUPS_MEMBERS}
    assert snapshot(engine, tenant_slug) == fresh(engine, fake, doc, f"{tenant_slug}-a")

    now = fake.tenant(tid)
    u = [x["id"] for x in now["users"]]
    members = now["members"]
    # a group nested in another, to delete (its parents lose a member); the others by index
    child = next(m for ms in members.values() for m in ms if m in members)
    groups = [g["id"] for g in now["groups"] if g["id"] != child]
    sku = now["subscribedSkus"][0]["skuId"]
    in_groups = [x for x in u[40:] if sum(x in ms for ms in members.values()) >= 2]
    new_user = fake.add_user(
        tid,
        {
            "userPrincipalName": "new.joiner@tailspin.example",
            "displayName": "New Joiner",
            "assignedLicenses": [{"skuId": sku, "disabledPlans": []}],
        },
    )
    fake.add_members(tid, groups[0], [new_user])
    fake.update_user(tid, u[1], jobTitle="Partial update")  # arrives as {id, jobTitle}
    fake.update_user(tid, u[2], department=None, assignedLicenses=[])  # set to null / empty
    fake.delete_user(tid, in_groups[0], reason="changed")
    fake.delete_user(tid, in_groups[1], reason="deleted")
    fake.set_manager(tid, u[5], u[6])  # arrives as {id}: the row stays, the manager is re-read
    outsider = next(x for x in u if x not in members[groups[1]] and x not in in_groups[:2])
    fake.add_members(tid, groups[1], [outsider, groups[2]])
    fake.remove_members(tid, groups[3], members[groups[3]][:2])
    new_group = fake.add_group(tid, {"displayName": "Fresh group"}, member_ids=u[10:14])
    fake.update_group(tid, groups[4], description="Partial group update")
    fake.delete_group(tid, child)
    fake.delete_group(tid, groups[6], reason="changed")
    before = links(engine, tenant_slug)
    reported = [
        o for page in DeltaRound(GraphClient(settings), before[GROUPS_MEMBERS]) for o in page
    ]

    fake.reset_stats()
    result, stats = run(engine, settings)
    assert result.mode == {"users": "incremental", "groups": "incremental"}
    # no existing group re-read; the new one is read whole, with its members, once
    reads = {k: v for k, v in fake.stats["requests"].items() if "/members" in k}
    assert reads == {"GET /v1.0/groups/{id}/members (batch)": 1}
    changes = result.changes
    assert changes["members_added"] == 1 + 2 + 4  # new user, outsider + nested, new group
    assert changes["members_removed"] >= 2 + 2 + 1  # removed, deleted users, deleted child
    assert changes["users_removed_changed"] == changes["users_removed_deleted"] == 1
    assert changes["groups_removed_deleted"] == changes["groups_removed_changed"] == 1
    present = [o["id"] for o in reported if "@removed" not in o]
    assert len(present) > len(set(present))  # a group over several entries, counted once
    assert changes["groups_changed"] == len(set(present))
    after = snapshot(engine, tenant_slug)
    assert after == fresh(engine, fake, doc, f"{tenant_slug}-b")
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT display_name, job_title FROM staging.users WHERE tenant = :t AND id = :i"
            ),
            {"t": tenant_slug, "i": u[1]},
        ).one()
        group = conn.execute(
            sa.text("SELECT display_name FROM staging.groups WHERE tenant = :t AND id = :i"),
            {"t": tenant_slug, "i": new_group},
        ).scalar()
    assert row.display_name == now["users"][1]["displayName"] and row.job_title == "Partial update"
    assert group == "Fresh group"

    # The same round applied again (a change a full read saw comes again): nothing moves.
    with engine.begin() as conn:
        for entity, link in before.items():
            conn.execute(
                sa.text(
                    "UPDATE sync.delta_state SET delta_link = :l WHERE tenant = :t AND entity = :e"
                ),
                {"l": link, "t": tenant_slug, "e": entity},
            )
    result, _ = run(engine, settings)
    assert result.mode == {"users": "incremental", "groups": "incremental"}
    assert snapshot(engine, tenant_slug) == after

    # An expired token: a full read (batched again) with the same result as a fresh sync.
    fake.update_user(tid, u[20], officeLocation="Moved")
    fake.expire_delta_tokens(tid, mode="410")
    result, stats = run(engine, settings)
    assert result.mode == {"users": "resync", "groups": "resync"} and stats.batches > 0
    assert snapshot(engine, tenant_slug) == fresh(engine, fake, doc, f"{tenant_slug}-c")
    later = fake.tenant(tid)
    late = next(x["id"] for x in later["users"] if x["id"] not in later["members"][groups[0]])
    fake.add_members(tid, groups[0], [late])
    result, _ = run(engine, settings)  # and the link the resync took works
    assert result.mode["groups"] == "incremental" and result.changes["members_added"] == 1
    assert snapshot(engine, tenant_slug) == fresh(engine, fake, doc, f"{tenant_slug}-d")


def test_a_change_made_during_the_full_read_comes_in_the_next_round(engine, tailspin, tenant_slug):
    """The members link is taken before the read: a membership changed after its group's
    members were read is missing from that read, and the next round brings it."""
    fake, doc = tailspin
    tid = doc["tenant_id"]
    now = fake.tenant(tid)
    members = now["members"]
    gid = max(members, key=lambda g: len(members[g]))
    joiner = next(u["id"] for u in now["users"] if u["id"] not in members[gid])
    settings = settings_for(tenant_slug, doc, fake)
    fake.reset_stats()
    fake.latency = 0.02  # the users round (30 pages) outlasts the groups' one batch
    try:
        with ThreadPoolExecutor(1) as pool:
            job = pool.submit(run, engine, settings)
            deadline = time.monotonic() + 60
            while not fake.stats["requests"].get(BATCH_MEMBERS):
                assert time.monotonic() < deadline and not job.done(), "no members batch seen"
                threading.Event().wait(0.002)
            fake.add_members(tid, gid, [joiner])
            fake.remove_members(tid, gid, [members[gid][0]])
            assert not job.done()  # the change came during the read
            result, _ = job.result()
    finally:
        fake.latency = 0.0
    assert result.mode == {"users": "full", "groups": "full"}
    staged = set(snapshot(engine, tenant_slug)["group_members"])
    assert (gid, joiner, "user") not in staged  # read before the change
    result, _ = run(engine, settings)
    assert result.changes["members_added"] == 1 and result.changes["members_removed"] == 1
    assert snapshot(engine, tenant_slug) == fresh(engine, fake, doc, f"{tenant_slug}-fresh")
