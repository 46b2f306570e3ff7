"""Extraction against the fake Graph over HTTPS and real Postgres: complete under throttling
and faults, incremental through delta queries, a full read when the delta token expires."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.defs.extract import FULL_READ_TAG, extract_assets
from sync_pipeline.extract import pager
from sync_pipeline.extract.extraction import extract
from sync_pipeline.extract.staging import GraphDataError
from sync_pipeline.graph import GraphClient
from sync_pipeline_tests.support.fakegraph import settings_for, start_fake
from sync_pipeline_tests.support.pipeline import materialise

TYPE = {"#microsoft.graph.user": "user", "#microsoft.graph.group": "group"}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """A tenant of its own behind a fake that throttles (every 7th call 429, RU buckets),
    fails 3 % with 503 and drops connections: the read must still be exact."""
    from sync_pipeline.fakegraph import generate_tenant

    doc = generate_tenant(name="northwind-test", users=600, seed=11, domain="northwind.example")
    fake = start_fake(
        [doc],
        tmp_path_factory.mktemp("faulty"),
        throttle=True,
        fail_every_nth_429=7,
        error_rate_503=0.03,
        drop_rate=0.02,
        fault_retry_after=0.05,
        delta_page_size=10,
        delta_member_page_size=60,
        seed=3,
    )
    yield fake, doc
    fake.stop()


def expected(doc: dict) -> dict[str, set]:
    users = {u["id"] for u in doc["users"]}
    groups = {g["id"] for g in doc["groups"]}
    others = {o["id"]: o["@odata.type"].rsplit(".", 1)[-1] for o in doc["other_objects"]}

    def kind(oid: str) -> str:
        return "user" if oid in users else "group" if oid in groups else others[oid]

    return {
        "users": users,
        "groups": groups,
        "group_members": {(g, m, kind(m)) for g, ms in doc["members"].items() for m in ms},
        "user_managers": {(u, m) for u, m in doc["managers"].items() if {u, m} <= users},
        "user_licences": {
            (u["id"], lic["skuId"]) for u in doc["users"] for lic in u["assignedLicenses"]
        },
        "subscribed_skus": {s["skuId"] for s in doc["subscribedSkus"]},
    }


def staged(engine: sa.Engine, tenant: str) -> dict[str, set]:
    queries = {
        "users": "SELECT id FROM staging.users WHERE tenant = :t",
        "groups": "SELECT id FROM staging.groups WHERE tenant = :t",
        "group_members": "SELECT group_id, member_id, member_type FROM staging.group_members "
        "WHERE tenant = :t",
        # links to a soft-deleted manager stay staged for its restore; the snapshot skips them
        "user_managers": "SELECT user_id, manager_id FROM staging.user_managers m "
        "WHERE tenant = :t AND EXISTS "
        "(SELECT 1 FROM staging.users u WHERE u.tenant = :t AND u.id = m.manager_id)",
        "user_licences": "SELECT user_id, sku_id FROM staging.user_licences WHERE tenant = :t",
        "subscribed_skus": "SELECT sku_id FROM staging.subscribed_skus WHERE tenant = :t",
    }
    with engine.connect() as conn:
        out = {}
        for name, sql in queries.items():
            rows = conn.execute(sa.text(sql), {"t": tenant}).all()
            out[name] = {r[0] if len(r) == 1 else tuple(r) for r in rows}
        return out


def run(engine, settings, *, full: bool = False):
    client = GraphClient(settings)
    with engine.begin() as conn:
        result = extract(client, conn, settings.slug, full=full, workers=6)
    return result, client.stats


@pytest.mark.parametrize("members_in_delta", [True, False], ids=["members@delta", "batch"])
def test_full_read_is_exact_despite_throttling_and_faults(
    engine, faulty, tenant_slug, members_in_delta, monkeypatch
):
    fake, doc = faulty
    monkeypatch.setattr(pager, "DELTA_MEMBERS_MAX_USERS", 10**9 if members_in_delta else 0)
    fake.reset_stats()
    settings = settings_for(tenant_slug, doc, fake)
    result, stats = run(engine, settings)
    assert result.mode == {"users": "full", "groups": "full"}
    assert staged(engine, tenant_slug) == expected(fake.tenant(doc["tenant_id"]))
    assert result.graph_counts == {"users": len(doc["users"]), "groups": len(doc["groups"])}
    faults = fake.stats["faults"]
    assert faults.get("429", 0) > 0 and faults.get("503", 0) + faults.get("drop", 0) > 0
    assert stats.retries > 0 and stats.resource_units > 0
    assert (stats.batches > 0) is not members_in_delta
    assert {"device", "orgContact"} & set(result.member_types)


@pytest.mark.parametrize("members_in_delta", [True, False], ids=["members@delta", "batch"])
def test_delta_sees_exactly_the_changes_then_expired_token_rereads_everything(
    engine, faulty, tenant_slug, members_in_delta, monkeypatch
):
    fake, doc = faulty
    monkeypatch.setattr(pager, "DELTA_MEMBERS_MAX_USERS", 10**9 if members_in_delta else 0)
    tid = doc["tenant_id"]
    settings = settings_for(tenant_slug, doc, fake)
    run(engine, settings)
    now = fake.tenant(tid)
    users = [u["id"] for u in now["users"]]
    groups = [g["id"] for g in now["groups"]]
    new_user = fake.add_user(
        tid, {"displayName": "New Person", "userPrincipalName": "np@x.example"}
    )
    fake.update_user(tid, users[1], jobTitle="Chief Tester")
    fake.delete_user(tid, users[2], reason="changed")
    fake.delete_user(tid, users[3], reason="deleted")
    fake.set_manager(tid, users[4], users[5])
    fake.add_members(tid, groups[0], [new_user])
    fake.remove_members(tid, groups[1], [m for m in now["members"][groups[1]][:1]])
    new_group = fake.add_group(tid, {"displayName": "Fresh group"}, member_ids=users[6:9])
    fake.update_group(tid, groups[2], displayName="Renamed")
    fake.delete_group(tid, groups[3])

    fake.reset_stats()
    result, _ = run(engine, settings)
    assert result.mode == {"users": "incremental", "groups": "incremental"}
    changes = result.changes
    assert changes["users_removed_changed"] == 1 and changes["users_removed_deleted"] == 1
    assert changes["groups_removed_deleted"] == 1
    # either way only the changed pairs came back (members@delta), no group was re-read
    assert changes["members_added"] >= 1 and changes["members_removed"] >= 1
    # no existing group's members were read again; the new group's were (once, and maybe
    # again after this fake's every-7th-call 429)
    reads = {k: v for k, v in fake.stats["requests"].items() if "/members" in k}
    assert set(reads) == {"GET /v1.0/groups/{id}/members (batch)"} and sum(reads.values()) <= 3
    reports = {u for u, m in now["managers"].items() if m == users[3]}
    # exactly what changed: the new user, the update, the new manager, the deleted user's
    # reports (a soft-deleted manager keeps its links: no change)
    assert changes["users_changed"] == len(
        ({new_user, users[1], users[4]} | reports) - {users[2], users[3]}
    )
    after = fake.tenant(tid)
    assert staged(engine, tenant_slug) == expected(after)
    with engine.connect() as conn:
        title = conn.execute(
            sa.text("SELECT job_title FROM staging.users WHERE tenant = :t AND id = :i"),
            {"t": tenant_slug, "i": users[1]},
        ).scalar()
        fresh = conn.execute(
            sa.text("SELECT display_name FROM staging.groups WHERE tenant = :t AND id = :i"),
            {"t": tenant_slug, "i": new_group},
        ).scalar()
    assert title == "Chief Tester" and fresh == "Fresh group"

    fake.update_user(tid, users[10], department="Moved")
    fake.expire_delta_tokens(tid, mode="410")
    result, _ = run(engine, settings)
    assert result.mode == {"users": "resync", "groups": "resync"}
    assert staged(engine, tenant_slug) == expected(fake.tenant(tid))

    fake.expire_delta_tokens(tid, mode="400")
    fresh_slug = f"{tenant_slug}-fresh"
    result, _ = run(engine, settings)
    assert result.mode == {"users": "resync", "groups": "resync"}
    run(engine, settings_for(fresh_slug, doc, fake))
    assert staged(engine, tenant_slug) == staged(engine, fresh_slug)


def test_a_count_mismatch_fails_and_keeps_the_previous_extraction(engine, faulty, tenant_slug):
    fake, doc = faulty
    settings = settings_for(tenant_slug, doc, fake)
    run(engine, settings)
    before = staged(engine, tenant_slug)
    lost = sorted(before["users"])[:30]  # more than the tolerance: max(20, 0.5 % of 600)
    with engine.begin() as conn:  # staging drifted from Graph (e.g. a lost delta page)
        conn.execute(
            sa.text("DELETE FROM staging.users WHERE tenant = :t AND id = ANY(:i)"),
            {"t": tenant_slug, "i": lost},
        )
    with pytest.raises(GraphDataError, match=r"Graph's \$count says .*pages were lost.*--full"):
        run(engine, settings)
    result, _ = run(engine, settings, full=True)
    assert result.mode["users"] == "full"
    assert staged(engine, tenant_slug) == expected(fake.tenant(doc["tenant_id"]))


def test_extract_asset_materialises_every_staging_asset_and_honours_full_tag(
    database_url, engine, register, tenant_slug, fake_tenant
):
    register(tenant_slug)
    keys = [k for a in extract_assets for k in a.keys]
    with dg.instance_for_test() as instance:
        first = materialise(instance, tenant_slug, assets=extract_assets, database_url=database_url)
        assert first.success
        mats = {
            m.asset_key.to_user_string(): m.metadata
            for m in first.get_asset_materialization_events()
            for m in [m.materialization]
        }
        assert {k.to_user_string() for k in keys} == set(mats)
        assert mats["graph_users"]["users"].value == len(fake_tenant["users"])
        assert mats["graph_users"]["mode_users"].value == "full"
        assert mats["graph_users"]["graph_requests"].value > 0
        second = materialise(
            instance, tenant_slug, assets=extract_assets, database_url=database_url
        )
        meta = second.asset_materializations_for_node("graph_directory")[0].metadata
        assert meta["mode_users"].value == "incremental"
        third = materialise(
            instance,
            tenant_slug,
            assets=extract_assets,
            database_url=database_url,
            tags={FULL_READ_TAG: "true"},
        )
        meta = third.asset_materializations_for_node("graph_directory")[0].metadata
        assert meta["mode_users"].value == "full"
    assert staged(engine, tenant_slug) == expected(fake_tenant)
