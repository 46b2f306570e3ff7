"""The Graph client against the fake over HTTPS: resource-unit costs and budget, $batch with
inner throttling, $count, links pinned to graph_base_url, and the per-app request ceiling."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sync_pipeline.extract.pager import manager_change, members_batch, objects_batch
from sync_pipeline.fakegraph.server import _cost as fake_cost
from sync_pipeline.graph import GraphClient
from sync_pipeline.graph.budget import Budget, cost, tenant_limit
from sync_pipeline_tests.support.fakegraph import settings_for, start_fake


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


# Each documented case of Microsoft's concepts/throttling-limits.md ("Identity and access
# service limits"): base costs, $select -1, $expand +1, $top below 20 -1, never below 1.
DOCUMENTED_COSTS = [
    ("GET", "/users", {}, 2),  # only the list costs 2
    ("GET", "/users", {"$select": "id"}, 1),
    ("GET", "/users", {"$select": "id", "$top": "999"}, 1),
    ("GET", "/users", {"$top": "19"}, 1),
    ("GET", "/users", {"$top": "20"}, 2),
    ("GET", "/users", {"$select": "id", "$expand": "manager($select=id)", "$top": "100"}, 2),
    ("GET", "/users", {"$select": "id", "$top": "5"}, 1),  # 2 - 1 - 1 = 0: never below 1
    ("GET", "/users/delta", {"$select": "id,mail"}, 1),  # delta costs 1, not 2
    ("GET", "/users/delta", {}, 1),
    ("GET", "/users/$count", {}, 1),
    ("GET", "/users/0f1e", {}, 1),  # users/{id}
    ("GET", "/users/0f1e", {"$select": "id"}, 1),
    ("GET", "/users/0f1e/manager", {"$select": "id"}, 1),
    ("GET", "/users/0f1e/licenseDetails", {}, 2),  # as me/licenseDetails
    ("GET", "/users/0f1e/memberOf", {}, 2),
    ("GET", "/users/0f1e/transitiveMemberOf", {"$top": "10"}, 1),
    ("GET", "/me/ownedObjects", {}, 2),
    ("GET", "/groups", {}, 1),
    ("GET", "/groups/delta", {"$select": "id,members"}, 1),
    ("GET", "/groups/9a/members", {}, 3),
    ("GET", "/groups/9a/members", {"$select": "id", "$top": "999"}, 2),
    ("GET", "/groups/9a/members", {"$select": "id", "$top": "5"}, 1),
    ("GET", "/groups/9a/transitiveMembers", {}, 5),
    ("GET", "/groups/9a/transitiveMembers", {"$top": "1"}, 4),
    ("GET", "/subscribedSkus", {}, 3),
    ("GET", "/subscribedSkus", {"$select": "skuId"}, 2),
    ("GET", "/applications", {}, 2),
    ("GET", "/contracts", {}, 3),
    ("GET", "/domains/contoso.com/domainNameReferences", {}, 4),
    ("GET", "/oauth2PermissionGrants/x", {}, 2),
    ("GET", "/servicePrincipals/x/appRoleAssignments", {}, 2),
    ("POST", "/directoryObjects/getByIds", {}, 3),
    ("POST", "/users/0f1e/checkMemberGroups", {}, 4),
    ("GET", "/organization", {}, 1),
]


@pytest.mark.parametrize(("method", "path", "params", "units"), DOCUMENTED_COSTS)
def test_cost_of_each_documented_case(method, path, params, units):
    assert cost(method, f"/v1.0{path}", params) == units
    query = "&".join(f"{k}={v}" for k, v in params.items())
    assert cost(method, f"https://graph.microsoft.com/v1.0{path}?{query}") == units
    assert fake_cost(method, path, {k.lower(): v for k, v in params.items()}) == units


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


def test_the_app_request_bucket_paces_requests_and_counts_batch_items():
    budget = Budget("app-rps-test", users=10_000, requests_per_second=100)  # 90 a second
    assert Budget("app-rps-test").requests is budget.requests  # one per app, process-wide
    started = time.monotonic()
    waited = sum(budget.spend(1) for _ in range(90))
    assert waited == 0 and time.monotonic() - started < 0.5  # the bucket starts full
    waited = budget.spend(1, requests=21)  # a $batch of 20: its items and itself
    assert 0.15 < waited < 0.35  # 21 requests at 90 a second


def test_the_fake_throttles_an_app_over_its_request_ceiling(own_fake, fake_tenant, tenant_slug):
    """Above the per-app requests-per-second ceiling the fake answers 429 with Retry-After,
    however few resource units the calls cost; the client's request bucket stays under it."""
    fake = own_fake(throttle=True, requests_per_second=40)  # 2,000 a second scaled down
    settings = settings_for(tenant_slug, fake_tenant, fake)
    client = GraphClient(settings)
    http = requests.Session()
    http.trust_env = False
    http.verify = str(fake.ca_path)
    auth = {"Authorization": f"Bearer {client.token()}"}
    url = f"{fake.base_url}/v1.0/users/$count"
    statuses = [http.get(url, headers={**auth, "ConsistencyLevel": "eventual"}) for _ in range(80)]
    throttled = [r for r in statuses if r.status_code == 429]
    assert throttled, "80 requests at once over a ceiling of 40 a second"
    assert throttled[0].json()["error"]["code"] == "TooManyRequests"
    assert float(throttled[0].headers["Retry-After"]) > 0
    assert fake.stats["throttled_requests_per_second"] == len(throttled)
    assert sum(r.status_code == 200 for r in statuses) >= 40  # the burst the bucket holds
    http.close()

    # the client's budget paces requests under the ceiling: no 429
    time.sleep(1.1)  # the point: the fake's per-second request bucket refills with time alone
    fake.reset_stats()
    paced = GraphClient(
        settings, budget=Budget(f"{settings.client_id}-paced", requests_per_second=40)
    )
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: paced.count("/users"), range(60)))
    assert fake.stats["throttled"] == 0
    assert paced.stats.budget_wait_seconds > 0.3


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
