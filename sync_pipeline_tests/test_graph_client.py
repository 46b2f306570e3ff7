"""The Graph client against the fake over HTTPS: resource-unit costs and budget, $batch with
inner throttling, $count, and links pinned to graph_base_url."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sync_pipeline.graph import GraphClient
from sync_pipeline.graph.budget import Budget, cost, tenant_limit
from sync_pipeline.graph.reader import manager_change, members_batch, objects_batch
from sync_pipeline_tests.conftest import settings_for, start_fake


@pytest.fixture
def own_fake(fake_tenant, tmp_path):
    """A fake of its own, configured per test (throttle, faults)."""

    started = []

    def make(**options):
        fake = start_fake([fake_tenant], tmp_path / str(len(started)), **options)
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


def test_costs_match_what_graph_charges(fake_graph, fake_tenant, tenant_slug):
    client = GraphClient(settings_for(tenant_slug, fake_tenant, fake_graph))
    uid, gid = fake_tenant["users"][0]["id"], fake_tenant["groups"][0]["id"]
    calls = [
        "/users?$top=5",
        "/users?$select=id&$top=5",
        "/users?$select=id&$expand=manager($select=id)&$top=5",
        f"/groups/{gid}/members",
        f"/groups/{gid}/members?$select=id",
        f"/groups/{gid}/transitiveMembers",
        "/subscribedSkus",
        f"/users/{uid}/licenseDetails",
        "/groups?$top=3",
        "/users/delta?$select=id",
    ]
    for path in calls:
        before = client.stats.resource_units
        client.get(path)
        assert client.stats.resource_units - before == cost("GET", path), path
    assert tenant_limit(49) == 3_500 and tenant_limit(500) == 5_000 and tenant_limit(501) == 8_000


def test_budget_keeps_concurrent_reads_under_the_limit(own_fake, fake_tenant, tenant_slug):
    fake = own_fake(throttle=True, throttle_scale=0.02)  # 260 users: 100 RU per 10 s
    settings = settings_for(tenant_slug, fake_tenant, fake)
    client = GraphClient(settings, budget=Budget(settings.client_id, users=260, scale=0.02))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: client.get("/users?$select=id&$top=1"), range(120)))
    assert fake.stats["throttled"] == 0  # waited in our budget instead of collecting 429s
    assert client.stats.budget_wait_seconds > 1.5
    assert client.stats.resource_units == 120


def test_tenants_of_one_app_share_the_app_budget():
    a, b = Budget("app-1", users=10), Budget("app-1", users=10_000)
    assert a.app is b.app and a.tenant is not b.tenant
    assert Budget("app-2").app is not a.app


def test_batch_retries_inner_429_and_reads_members_and_users(own_fake, fake_tenant, tenant_slug):
    fake = own_fake(fail_every_nth_429=3, fault_retry_after=0.05)
    client = GraphClient(settings_for(tenant_slug, fake_tenant, fake))
    groups = [g["id"] for g in fake_tenant["groups"]][:20]
    got: dict[str, set[str]] = {}
    for gid, page, first in members_batch(client, groups):
        assert first is (gid not in got)
        got.setdefault(gid, set()).update(m["id"] for m in page)
    assert got == {g: set(fake_tenant["members"][g]) for g in groups}
    users = [u["id"] for u in fake_tenant["users"]][:20]
    whole = {u["id"]: u for u in objects_batch(client, "users", users)}
    assert set(whole) == set(users)
    managers = {uid: manager_change(u)[1] for uid, u in whole.items()}
    assert managers == {u: fake_tenant["managers"].get(u) for u in users}
    assert client.stats.throttled > 0 and client.stats.batches >= 2


def test_count_and_links_pinned_to_the_graph_host(fake_graph, fake_tenant, tenant_slug):
    client = GraphClient(settings_for(tenant_slug, fake_tenant, fake_graph))
    assert client.count("/users") == len(fake_tenant["users"])
    assert client.count("/groups") == len(fake_tenant["groups"])
    elsewhere = "https://graph.example.invalid:1/v1.0/users?$top=1"
    assert client._url(elsewhere) == f"{fake_graph.base_url}/v1.0/users?$top=1"
    assert len(client.get(elsewhere)["value"]) == 1
