"""The bundled fake Graph: generator, and real HTTPS through msal and requests."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sync_pipeline.fakegraph import FakeGraph, bundled_tenant, generate_tenant, load_tenant_file
from sync_pipeline.fakegraph.generator import USER_KEYS
from sync_pipeline.fakegraph.server import serve_forever
from sync_pipeline_tests.support.waiting import wait_until

SECRET = "fake-secret-value"
SCOPE = ["https://graph.microsoft.com/.default"]
ALL_USER_PROPS = ",".join(USER_KEYS)


@pytest.fixture(scope="module")
def tenant() -> dict:
    return bundled_tenant()


def _session(fake: FakeGraph) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(fake.ca_path)
    return session


def _app(fake: FakeGraph, tenant: dict, secret: str = SECRET, session=None):
    return msal.ConfidentialClientApplication(
        tenant["client_id"],
        client_credential=secret,
        authority=f"{fake.base_url}/{tenant['tenant_id']}",
        instance_discovery=False,
        http_client=session or _session(fake),
    )


class Client:
    """A tiny Graph client over requests, as the project's real client would do it."""

    def __init__(self, fake: FakeGraph, tenant: dict):
        self.fake = fake
        self.session = _session(fake)
        result = _app(fake, tenant, session=self.session).acquire_token_for_client(scopes=SCOPE)
        assert "access_token" in result, result
        self.headers = {"Authorization": f"Bearer {result['access_token']}"}

    def get(self, path: str, **headers: str) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.fake.base_url}/v1.0{path}"
        return self.session.get(url, headers={**self.headers, **headers}, timeout=30)

    def all_pages(self, path: str, **headers: str) -> tuple[list[dict], list[dict]]:
        pages, items, url = [], [], path
        while url:
            resp = self.get(url, **headers)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            pages.append(page)
            items.extend(page["value"])
            url = page.get("@odata.nextLink")
        return items, pages

    def delta(self, url: str) -> tuple[list[dict], str]:
        items = []
        while True:
            resp = self.get(url)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            items.extend(page["value"])
            if "@odata.deltaLink" in page:
                return items, page["@odata.deltaLink"]
            url = page["@odata.nextLink"]


@pytest.fixture(scope="module")
def fake(tenant: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGraph]:
    state = tmp_path_factory.mktemp("fakegraph")
    with FakeGraph([tenant], secrets={tenant["tenant_id"]: SECRET}, state_dir=state) as server:
        yield server


@pytest.fixture(scope="module")
def client(fake: FakeGraph, tenant: dict) -> Client:
    return Client(fake, tenant)


def _fresh(tenant: dict, tmp_path: Path, **kwargs) -> FakeGraph:
    return FakeGraph([tenant], secrets={tenant["tenant_id"]: SECRET}, state_dir=tmp_path, **kwargs)


# ----------------------------------------------------------------------------------------
# generator


def test_generator_is_deterministic() -> None:
    a = generate_tenant(name="acme", users=120, seed=7)
    b = generate_tenant(name="acme", users=120, seed=7)
    c = generate_tenant(name="acme", users=120, seed=8)
    assert a == b
    assert a["tenant_id"] != c["tenant_id"]
    assert a["domain"] == "acme.com"
    for user in a["users"]:
        assert tuple(user) == USER_KEYS
        uuid.UUID(user["id"])


def test_bundled_tenant_is_reproduced_by_the_generator(tenant: dict) -> None:
    again = generate_tenant(name="contoso-demo", users=300, seed=42, domain="contoso.com")
    assert again == tenant
    path = Path(__file__).parents[1] / "sync_pipeline/fakegraph/tenants/contoso-demo.json"
    assert load_tenant_file(path) == tenant


def test_generated_tenant_has_real_world_variety(tenant: dict) -> None:
    users = tenant["users"]
    by_id = {u["id"]: u for u in users}
    n = len(users)
    assert n == 300
    assert sum(u["userType"] == "Guest" for u in users) >= 3
    guest = next(u for u in users if u["userType"] == "Guest")
    assert "#EXT#@" in guest["userPrincipalName"]
    assert 0.02 * n <= sum(not u["accountEnabled"] for u in users) <= 0.12 * n
    assert sum(u["mail"] is None for u in users) >= 0.02 * n
    differs = [
        u
        for u in users
        if u["mail"] and u["mail"].strip().lower() != u["userPrincipalName"].lower()
    ]
    assert len(differs) >= 0.05 * n
    assert all(
        any(p.startswith("SMTP:") for p in u["proxyAddresses"])
        for u in users
        if u["proxyAddresses"]
    )
    assert any(p.startswith("smtp:") for u in users for p in u["proxyAddresses"])
    primary_differs = [
        u
        for u in users
        if u["mail"]
        and u["proxyAddresses"]
        and u["proxyAddresses"][0][5:].lower() != u["mail"].strip().lower()
    ]
    assert primary_differs
    upns = collections.Counter(u["userPrincipalName"].lower() for u in users)
    assert max(upns.values()) == 2  # two UPNs differing only by case
    assert any(u["mail"] and u["mail"] != u["mail"].strip() for u in users)
    lower_upns = {u["userPrincipalName"].lower(): u["id"] for u in users}
    assert any(u["mail"] and lower_upns.get(u["mail"].lower(), u["id"]) != u["id"] for u in users)
    shared = [u for u in users if u["displayName"].endswith("Mailbox")]
    assert shared and all(not u["assignedLicenses"] for u in shared)
    # licences and SKUs agree
    consumed = collections.Counter(lic["skuId"] for u in users for lic in u["assignedLicenses"])
    assert {s["skuPartNumber"] for s in tenant["subscribedSkus"]} == {
        "ENTERPRISEPACK",
        "SPE_E5",
        "EXCHANGESTANDARD",
    }
    for sku in tenant["subscribedSkus"]:
        assert sku["consumedUnits"] == consumed[sku["skuId"]]
        assert sku["prepaidUnits"]["enabled"] >= sku["consumedUnits"]
    # manager tree: one root (the CEO), several levels, most users managed, and one ring of
    # three enabled members who manage each other (a manager cycle)
    managers = tenant["managers"]
    assert users[0]["id"] not in managers
    assert len(managers) >= 0.85 * n

    def chain(uid: str) -> list[str]:
        seen = [uid]
        while uid in managers and managers[uid] not in seen:
            uid = managers[uid]
            seen.append(uid)
        return seen

    # a user on a cycle is where its own chain comes back to
    cycles = {frozenset(c) for u in managers if managers.get((c := chain(u))[-1]) == u}
    assert len(cycles) == 1 and len(next(iter(cycles))) == 3
    assert all(by_id[u]["accountEnabled"] for u in next(iter(cycles)))
    assert max(len(chain(u)) - 1 for u in managers) >= 3
    assert all(m in by_id for m in managers.values())
    # groups of every type, nesting with a cycle, empty, big, non-user members
    groups = {g["id"]: g for g in tenant["groups"]}
    members = tenant["members"]
    kinds = collections.Counter()
    for g in groups.values():
        if "Unified" in g["groupTypes"]:
            kinds["m365"] += 1
        elif g["mailEnabled"] and g["securityEnabled"]:
            kinds["mailsec"] += 1
        elif g["mailEnabled"]:
            kinds["dl"] += 1
        else:
            kinds["sec"] += 1
    assert all(kinds[k] for k in ("m365", "mailsec", "dl", "sec")), kinds
    dynamic = [g for g in groups.values() if "DynamicMembership" in g["groupTypes"]]
    assert dynamic and dynamic[0]["membershipRule"]
    assert any(not m for m in members.values())
    assert max(len(m) for m in members.values()) > 100
    nested = {gid: [m for m in ms if m in groups] for gid, ms in members.items()}
    assert any(b in nested and a in nested[b] for a, bs in nested.items() for b in bs)  # cycle
    assert any(any(nested.get(c) for c in cs) for cs in nested.values())  # 2+ levels
    types = {o["id"]: o["@odata.type"] for o in tenant["other_objects"]}
    member_types = {types[m] for ms in members.values() for m in ms if m in types}
    assert member_types == {
        "#microsoft.graph.orgContact",
        "#microsoft.graph.device",
        "#microsoft.graph.servicePrincipal",
    }


def test_generator_scale_is_proportional() -> None:
    # its speed is benchmarks/ work (tests never assert times)
    doc = generate_tenant(name="big", users=20_000, seed=3)
    memberships = sum(len(m) for m in doc["members"].values())
    assert 12 <= memberships / 20_000 <= 16
    assert 700 <= len(doc["groups"]) <= 900


# ----------------------------------------------------------------------------------------
# token endpoint


def test_msal_client_credentials(fake: FakeGraph, tenant: dict) -> None:
    result = _app(fake, tenant).acquire_token_for_client(scopes=SCOPE)
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3599
    assert result["access_token"]


def test_msal_wrong_secret(fake: FakeGraph, tenant: dict) -> None:
    result = _app(fake, tenant, secret="wrong").acquire_token_for_client(scopes=SCOPE)
    assert result["error"] == "invalid_client"
    assert "AADSTS7000215" in result["error_description"]
    assert result["error_codes"] == [7000215]


def test_token_endpoint_errors(fake: FakeGraph, tenant: dict) -> None:
    session = _session(fake)
    form = {
        "grant_type": "client_credentials",
        "client_id": tenant["client_id"],
        "client_secret": SECRET,
        "scope": SCOPE[0],
    }
    unknown = str(uuid.UUID(int=1))
    resp = session.post(f"{fake.base_url}/{unknown}/oauth2/v2.0/token", data=form)
    assert resp.status_code == 400
    assert "AADSTS90002" in resp.json()["error_description"]
    resp = session.post(
        f"{fake.base_url}/{tenant['tenant_id']}/oauth2/v2.0/token",
        data={**form, "client_id": unknown},
    )
    assert resp.status_code == 400
    assert resp.json()["error_codes"] == [700016]
    assert resp.headers["request-id"]


def test_certificate_credential(tenant: dict, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sync-pipeline")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=9))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    thumb = cert.fingerprint(hashes.SHA1()).hex()
    certs = {tenant["tenant_id"]: {thumb: cert_pem}}
    with _fresh(tenant, tmp_path, certificates=certs) as fake:
        app = msal.ConfidentialClientApplication(
            tenant["client_id"],
            client_credential={"private_key": key_pem, "thumbprint": thumb},
            authority=f"{fake.base_url}/{tenant['tenant_id']}",
            instance_discovery=False,
            http_client=_session(fake),
        )
        assert "access_token" in app.acquire_token_for_client(scopes=SCOPE)
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other_pem = other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        bad = msal.ConfidentialClientApplication(
            tenant["client_id"],
            client_credential={"private_key": other_pem, "thumbprint": thumb},
            authority=f"{fake.base_url}/{tenant['tenant_id']}",
            instance_discovery=False,
            http_client=_session(fake),
        )
        result = bad.acquire_token_for_client(scopes=SCOPE)
        assert result["error"] == "invalid_client"


# ----------------------------------------------------------------------------------------
# Graph reads


def test_graph_requires_a_token(fake: FakeGraph) -> None:
    session = _session(fake)
    resp = session.get(f"{fake.base_url}/v1.0/users", headers={"client-request-id": "abc"})
    assert resp.status_code == 401
    body = resp.json()["error"]
    assert body["code"] == "InvalidAuthenticationToken"
    assert body["innerError"]["client-request-id"] == "abc"
    assert resp.headers["client-request-id"] == "abc"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert body["innerError"]["request-id"] == resp.headers["request-id"]
    resp = session.get(f"{fake.base_url}/v1.0/users", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401


def test_paging_users_to_the_end(client: Client, tenant: dict) -> None:
    items, pages = client.all_pages(f"/users?$select={ALL_USER_PROPS}&$top=999")
    assert items == tenant["users"]
    assert len(pages) == 1
    items, pages = client.all_pages("/users?$select=id,userPrincipalName&$top=120")
    assert [u["id"] for u in items] == [u["id"] for u in tenant["users"]]
    assert len(pages) == 3
    assert set(items[0]) == {"id", "userPrincipalName"}
    assert "$select=id,userPrincipalName" in pages[0]["@odata.nextLink"]
    assert "$skiptoken=" in pages[0]["@odata.nextLink"]
    assert pages[0]["@odata.context"].endswith("$metadata#users(id,userPrincipalName)")
    default, pages = client.all_pages("/users")
    assert len(pages) == 3  # default page size 100
    assert set(default[0]) == {
        "businessPhones",
        "displayName",
        "givenName",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
        "id",
    }


def test_page_size_limit(client: Client) -> None:
    resp = client.get("/users?$top=1000")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "Request_BadRequest"
    assert "Invalid page size" in resp.json()["error"]["message"]
    assert client.get("/users?$skip=5").status_code == 400
    assert client.get("/users?$select=nope").status_code == 400


def test_groups_and_members_paging(client: Client, tenant: dict) -> None:
    groups, _ = client.all_pages("/groups?$top=5")
    assert groups == tenant["groups"]
    big = max(tenant["members"], key=lambda g: len(tenant["members"][g]))
    assert len(tenant["members"][big]) > 100
    members, pages = client.all_pages(f"/groups/{big}/members?$select=id,mail")
    assert len(pages) > 1
    assert [m["id"] for m in members] == tenant["members"][big]
    assert all(m["@odata.type"] == "#microsoft.graph.user" and "mail" in m for m in members)
    types = {
        m["@odata.type"]
        for gid in tenant["members"]
        for m in client.all_pages(f"/groups/{gid}/members?$top=999")[0]
    }
    assert {
        "#microsoft.graph.group",
        "#microsoft.graph.orgContact",
        "#microsoft.graph.device",
        "#microsoft.graph.servicePrincipal",
        "#microsoft.graph.user",
    } <= types
    resp = client.get(f"/groups/{uuid.UUID(int=5)}/members")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "Request_ResourceNotFound"


def test_transitive_members_are_flat_and_cycle_safe(client: Client, tenant: dict) -> None:
    by_name = {g["displayName"]: g["id"] for g in tenant["groups"]}
    falcon, core = by_name["Project Falcon"], by_name["Project Falcon Core"]
    items, _ = client.all_pages(f"/groups/{falcon}/transitiveMembers?$top=999")
    ids = [i["id"] for i in items]
    expected = set(tenant["members"][falcon]) | set(tenant["members"][core])
    expected.discard(falcon)
    assert set(ids) == expected and len(ids) == len(set(ids))
    eng, _ = client.all_pages(f"/groups/{by_name['Engineering']}/transitiveMembers")
    sre = by_name["Engineering - Platform - SRE"]
    assert sre in {i["id"] for i in eng}
    assert set(tenant["members"][sre]) <= {i["id"] for i in eng}


def test_manager(client: Client, tenant: dict) -> None:
    ceo = tenant["users"][0]["id"]
    resp = client.get(f"/users/{ceo}/manager")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "Request_ResourceNotFound"
    uid, mid = next(iter(tenant["managers"].items()))
    resp = client.get(f"/users/{uid}/manager?$select=id,displayName")
    assert resp.status_code == 200
    assert resp.json()["id"] == mid
    assert resp.json()["@odata.type"] == "#microsoft.graph.user"
    licensed = next(u for u in tenant["users"] if u["assignedLicenses"])
    details = client.get(f"/users/{licensed['id']}/licenseDetails")
    assert details.headers["x-ms-resource-unit"] == "2"
    assert [d["skuId"] for d in details.json()["value"]] == [
        lic["skuId"] for lic in licensed["assignedLicenses"]
    ]


def test_subscribed_skus(client: Client, tenant: dict) -> None:
    resp = client.get("/subscribedSkus")
    assert resp.status_code == 200
    assert resp.json()["value"] == tenant["subscribedSkus"]
    assert resp.headers["x-ms-resource-unit"] == "3"


# ----------------------------------------------------------------------------------------
# (1) $count, (2) $expand, (3) $batch


def test_count(client: Client, tenant: dict) -> None:
    eventual = {"ConsistencyLevel": "eventual"}
    assert client.get("/users?$count=true").status_code == 400
    items, pages = client.all_pages("/users?$count=true&$top=150", **eventual)
    assert pages[0]["@odata.count"] == len(tenant["users"]) == len(items)
    assert "@odata.count" not in pages[1]
    resp = client.get("/users/$count", **eventual)
    assert resp.text == str(len(tenant["users"]))
    assert resp.headers["content-type"].startswith("text/plain")
    assert client.get("/groups/$count", **eventual).text == str(len(tenant["groups"]))
    assert client.get("/users/$count").status_code == 400


def test_expand_manager(client: Client, tenant: dict) -> None:
    expand = "$expand=manager($levels=1;$select=id)"
    items, pages = client.all_pages(f"/users?$select=id&{expand}&$top=100")
    assert len(pages) == 3
    got = {u["id"]: u["manager"]["id"] for u in items if "manager" in u}
    assert got == tenant["managers"]
    assert client.get(f"/users?{expand}&$top=101").status_code == 400
    assert client.get("/users?$expand=memberOf").status_code == 400


def test_batch(client: Client, tenant: dict) -> None:
    ceo = tenant["users"][0]["id"]
    reqs = [
        {"id": "1", "method": "GET", "url": "/users?$select=id&$top=5"},
        {"id": "2", "method": "GET", "url": f"/users/{ceo}/manager"},
        {"id": "3", "method": "GET", "url": "/subscribedSkus"},
        {"id": "4", "method": "GET", "url": "/groups", "dependsOn": ["2"]},
        {
            "id": "5",
            "method": "GET",
            "url": "/users/$count",
            "headers": {"ConsistencyLevel": "eventual"},
        },
    ]
    url = f"{client.fake.base_url}/v1.0/$batch"
    resp = client.session.post(url, json={"requests": reqs}, headers=client.headers)
    assert resp.status_code == 200
    by_id = {r["id"]: r for r in resp.json()["responses"]}
    assert by_id["1"]["status"] == 200 and len(by_id["1"]["body"]["value"]) == 5
    assert by_id["2"]["status"] == 404
    assert by_id["2"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert by_id["3"]["body"]["value"] == tenant["subscribedSkus"]
    assert by_id["4"]["status"] == 424
    assert by_id["5"]["body"] == str(len(tenant["users"]))
    dup = [{"id": "1", "method": "GET", "url": "/users"}] * 2
    assert (
        client.session.post(url, json={"requests": dup}, headers=client.headers).status_code == 400
    )
    many = [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]
    assert (
        client.session.post(url, json={"requests": many}, headers=client.headers).status_code == 400
    )
    assert client.session.post(url, json={"requests": reqs[:1]}).status_code == 401


# ----------------------------------------------------------------------------------------
# (4) throttling, (5) faults


def test_resource_unit_throttling(tenant: dict, tmp_path: Path) -> None:
    with _fresh(tenant, tmp_path, throttle=True, throttle_scale=0.004) as fake:  # 20 RU / 10 s
        client = Client(fake, tenant)
        statuses = []
        for _ in range(40):
            resp = client.get("/users?$top=1")  # 2 RU each
            statuses.append(resp.status_code)
            assert "x-ms-resource-unit" in resp.headers
            if resp.status_code == 429:
                break
        assert statuses[-1] == 429
        assert resp.json()["error"]["code"] == "TooManyRequests"
        wait = float(resp.headers["Retry-After"])
        assert 0 < wait <= 10
        assert "." in resp.headers["Retry-After"]
        assert statuses.count(200) >= 10  # 20 RU bucket, 2 RU per call, slow refill
        time.sleep(wait + 0.05)  # the point: a client that honours Retry-After is served again
        ok = client.get("/users?$select=id&$top=1")
        assert ok.status_code == 200
        assert ok.headers["x-ms-resource-unit"] == "1"
        assert "x-ms-throttle-limit-percentage" in ok.headers
        assert fake.stats["throttled"] == 1


def test_injected_faults_are_reproducible(tenant: dict, tmp_path: Path) -> None:
    with _fresh(tenant, tmp_path / "a", fail_every_nth_429=3) as fake:
        client = Client(fake, tenant)
        codes = [client.get("/groups?$top=1") for _ in range(6)]
        assert [r.status_code for r in codes] == [200, 200, 429] * 2
        assert float(codes[2].headers["Retry-After"]) > 0

    def run(path: Path) -> list[int]:
        with _fresh(tenant, path, seed=11, error_rate_503=0.5) as fake:
            client = Client(fake, tenant)
            return [client.get("/groups?$top=1").status_code for _ in range(20)]

    first = run(tmp_path / "b")
    assert set(first) == {200, 503}
    assert run(tmp_path / "c") == first
    with _fresh(tenant, tmp_path / "e", empty_page_rate=0.3, seed=2) as fake:
        client = Client(fake, tenant)
        items, pages = client.all_pages("/users?$select=id&$top=50")
        assert [u["id"] for u in items] == [u["id"] for u in tenant["users"]]
        assert any(not p["value"] for p in pages)
    with _fresh(tenant, tmp_path / "d", drop_rate=1.0) as fake:
        client = Client(fake, tenant)
        with pytest.raises(requests.ConnectionError):
            client.get("/users")
        assert fake.stats["faults"]["drop"] == 1


def test_latency(tenant: dict, tmp_path: Path) -> None:
    with _fresh(tenant, tmp_path, latency=0.05) as fake:
        client = Client(fake, tenant)
        start = time.monotonic()
        client.get("/groups?$top=1")
        assert time.monotonic() - start >= 0.05


# ----------------------------------------------------------------------------------------
# (6) delta, (7) admin


def test_users_delta(tenant: dict, tmp_path: Path) -> None:
    with _fresh(tenant, tmp_path, delta_page_size=64) as fake:
        client = Client(fake, tenant)
        tid = tenant["tenant_id"]
        items, link = client.delta("/users/delta?$select=id,mail,displayName")
        # every user in order; some again later in the round (Graph may repeat any object)
        ids = [u["id"] for u in items]
        assert list(dict.fromkeys(ids)) == [u["id"] for u in tenant["users"]]
        assert len(ids) > len(set(ids))
        assert set(items[0]) == {"id", "mail", "displayName"}
        assert client.delta(link)[0] == []
        victim, soft, renamed = (tenant["users"][i]["id"] for i in (5, 6, 7))
        new = fake.add_user(
            tid,
            {
                "userPrincipalName": "new.person@contoso.com",
                "displayName": "New Person",
                "mail": "new.person@contoso.com",
            },
        )
        fake.delete_user(tid, victim)
        fake.delete_user(tid, soft, reason="changed")
        fake.update_user(tid, renamed, displayName="Renamed")
        changes, link2 = client.delta(link)
        by_id = {c["id"]: c for c in changes}
        # the victim's reports lost their manager, invisible without `manager` selected
        assert set(by_id) == {new, victim, soft, renamed}
        assert by_id[victim]["@removed"] == {"reason": "deleted"}
        assert by_id[soft]["@removed"] == {"reason": "changed"}
        assert by_id[renamed] == {
            "id": renamed,
            "mail": tenant["users"][7]["mail"],
            "displayName": "Renamed",
        }
        assert by_id[new]["displayName"] == "New Person"
        # a fresh first round reports the soft-deleted user as removed
        first, _ = client.delta("/users/delta?$select=id")
        assert {"id": soft, "@removed": {"reason": "changed"}} in first
        fake.delta_token_ttl = 0.0  # tokens older than the TTL are gone too
        assert client.get(link2).status_code == 410
        fake.delta_token_ttl = 7 * 86400.0
        assert client.get(link2).status_code == 200
        fake.expire_delta_tokens(tid)
        gone = client.get(link2)
        assert gone.status_code == 410
        assert gone.headers["Location"].endswith("/v1.0/users/delta?$select=id,mail,displayName")
        fake.expire_delta_tokens(tid, mode="400")
        resp = client.get(link2)
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "syncStateNotFound"
        assert client.get("/users/delta?$deltatoken=garbage").status_code == 400
        assert client.get("/users/delta?$top=5").status_code == 400


def test_groups_delta_members(tenant: dict, tmp_path: Path) -> None:
    with _fresh(tenant, tmp_path, delta_page_size=10, delta_member_page_size=100) as fake:
        client = Client(fake, tenant)
        tid = tenant["tenant_id"]
        start = "/groups/delta?$select=id,displayName,groupTypes,members"
        items, link = client.delta(start)
        merged: dict[str, set[str]] = collections.defaultdict(set)
        seen = collections.Counter()
        for item in items:
            seen[item["id"]] += 1
            merged[item["id"]] |= {m["id"] for m in item.get("members@delta", [])}
        assert {gid: set(ms) for gid, ms in tenant["members"].items()} == dict(merged)
        big = max(tenant["members"], key=lambda g: len(tenant["members"][g]))
        assert seen[big] >= 2  # split across pages
        out = tenant["members"][big][:3]
        fake.remove_members(tid, big, out)
        fake.add_members(tid, big, [tenant["users"][-1]["id"]])
        doomed = next(g["id"] for g in tenant["groups"] if g["displayName"] == "Archived Project")
        fake.delete_group(tid, doomed)
        changes, _ = client.delta(link)
        by_id = {c["id"]: c for c in changes}
        assert by_id[doomed]["@removed"] == {"reason": "deleted"}
        deltas = {m["id"]: m for m in by_id[big]["members@delta"]}
        assert all(deltas[m]["@removed"] == {"reason": "deleted"} for m in out)
        assert "@removed" not in deltas[tenant["users"][-1]["id"]]


def test_admin_http_api(tenant: dict, tmp_path: Path) -> None:
    with _fresh(tenant, tmp_path) as fake:
        client = Client(fake, tenant)
        tid = tenant["tenant_id"]
        admin = f"{fake.base_url}/_admin"
        ops = [
            {"op": "add_user", "user": {"id": str(uuid.UUID(int=9)), "displayName": "X"}},
            {
                "op": "set_manager",
                "user_id": str(uuid.UUID(int=9)),
                "manager_id": tenant["users"][0]["id"],
            },
            {
                "op": "add_group",
                "group": {"displayName": "New group"},
                "member_ids": [str(uuid.UUID(int=9))],
            },
        ]
        resp = client.session.post(f"{admin}/tenants/{tid}/mutate", json={"ops": ops})
        assert resp.status_code == 200, resp.text
        gid = resp.json()["results"][2]
        assert (
            client.get(f"/users/{uuid.UUID(int=9)}/manager").json()["id"]
            == (tenant["users"][0]["id"])
        )
        members = client.get(f"/groups/{gid}/members").json()["value"]
        assert [m["id"] for m in members] == [str(uuid.UUID(int=9))]
        assert client.session.get(f"{admin}/stats").json()["requests"][
            "GET /v1.0/users/{id}/manager"
        ]
        client.session.post(f"{admin}/stats/reset")
        assert fake.stats["total_requests"] == 0
        bad = client.session.post(
            f"{admin}/tenants/{tid}/mutate", json={"ops": [{"op": "delete_user", "id": "missing"}]}
        )
        assert bad.status_code == 404
        client.session.post(f"{admin}/tenants/{tid}/expire-access-tokens")
        assert client.get("/users").status_code == 401


# ----------------------------------------------------------------------------------------
# (8) device code and refresh tokens


def test_device_code_and_refresh(tenant: dict, tmp_path: Path) -> None:
    with _fresh(tenant, tmp_path) as fake:
        session = _session(fake)
        app = msal.PublicClientApplication(
            tenant["client_id"],
            authority=f"{fake.base_url}/{tenant['tenant_id']}",
            instance_discovery=False,
            http_client=session,
        )
        scopes = ["https://graph.microsoft.com/User.Read.All"]
        flow = app.initiate_device_flow(scopes=scopes)
        assert flow["user_code"] and "devicelogin" in flow["verification_uri"]
        pending = app.acquire_token_by_device_flow(flow, exit_condition=lambda flow: True)
        assert pending["error"] == "authorization_pending"
        resp = session.post(
            f"{fake.base_url}/_admin/device/approve", json={"user_code": flow["user_code"]}
        )
        assert resp.status_code == 200
        flow["latest_attempt_at"] = 0
        result = app.acquire_token_by_device_flow(flow, exit_condition=lambda flow: True)
        assert "access_token" in result, result
        admin = tenant["users"][0]
        assert result["id_token_claims"]["preferred_username"] == admin["userPrincipalName"]
        assert result["id_token_claims"]["oid"] == admin["id"]
        info = result["client_info"]
        assert base64.urlsafe_b64decode(info + "=" * (-len(info) % 4))
        me = session.get(
            f"{fake.base_url}/v1.0/users?$top=1",
            headers={"Authorization": f"Bearer {result['access_token']}"},
        )
        assert me.status_code == 200
        account = app.get_accounts()[0]
        assert account["username"] == admin["userPrincipalName"]
        again = app.acquire_token_silent_with_error(scopes, account=account, force_refresh=True)
        assert again and "access_token" in again
        fake.revoke_refresh_tokens(tenant["tenant_id"])
        failed = app.acquire_token_silent_with_error(scopes, account=account, force_refresh=True)
        assert failed["error"] == "invalid_grant"
        assert "AADSTS50173" in failed["error_description"]


# ----------------------------------------------------------------------------------------
# serve_forever and the CA kept in state_dir


def test_serve_forever_and_ca_reuse(tenant: dict, tmp_path: Path) -> None:
    ready: list[FakeGraph] = []
    thread = threading.Thread(
        target=serve_forever,
        args=(tenant,),
        kwargs={"port": 0, "secret": SECRET, "state_dir": tmp_path, "on_ready": ready.append},
        daemon=True,
    )
    thread.start()
    fake = wait_until(lambda: ready, 10, "serve_forever's on_ready")[0]
    ca_before = fake.ca_path.read_bytes()
    assert "access_token" in _app(fake, tenant).acquire_token_for_client(scopes=SCOPE)
    fake.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    with _fresh(tenant, tmp_path) as again:
        assert again.ca_path.read_bytes() == ca_before
        assert "access_token" in _app(again, tenant).acquire_token_for_client(scopes=SCOPE)


def test_one_app_shares_one_budget_across_its_tenants(tmp_path: Path) -> None:
    """Per app across tenants (150,000 RU / 20 s, scaled): an app registered in many tenants
    is throttled in a tenant it has not called yet once the others spent the app's budget;
    the per-tenant counts say whose calls and 429s they were."""
    app = str(uuid.UUID(int=1))
    docs = [generate_tenant(name=f"shared-{i}", users=5, seed=i) for i in range(80)]
    for doc in docs:
        doc["client_id"] = app  # one multi-tenant app registration
    secrets_ = {d["tenant_id"]: SECRET for d in docs}
    # 0.001: 3.5 RU per tenant (under 50 users), 150 RU for the app across its tenants,
    # refilled at 7.5 RU/s: 80 tenants spending 3 RU each outrun it
    with FakeGraph(
        docs, secrets=secrets_, state_dir=tmp_path, throttle=True, throttle_scale=0.001
    ) as fake:
        # every token first: a token is the slow part (msal over HTTPS), and the budget
        # refills meanwhile; with them taken in the loop, a loaded machine refilled the
        # app's budget between tenants as fast as they spent it, and nothing was throttled
        clients = [Client(fake, doc) for doc in docs]
        first_calls = []
        for client in clients:
            codes = [client.get("/users?$select=id").status_code for _ in range(4)]
            first_calls.append(codes[0])
        stats = fake.stats
    assert first_calls[0] == 200 and first_calls[-1] == 429  # the app's budget, not the tenant's
    assert sum(stats["graph_calls_by_tenant"].values()) == 4 * len(docs)
    last = docs[-1]["tenant_id"]
    assert stats["throttled_by_tenant"][last] == 4
    assert sum(stats["throttled_by_tenant"].values()) == stats["throttled"]


def test_member_of_lists_direct_groups_in_pages(tmp_path: Path) -> None:
    """`/users/{id}/memberOf` (user-list-memberof.md): the direct groups only, 100 a page by
    default, each with its `@odata.type`; a group above them is not listed."""
    from sync_pipeline.fakegraph import generate_tenant

    doc = generate_tenant(name="memberof", users=5, seed=3, domain="memberof.example")
    tid, user = doc["tenant_id"], doc["users"][0]["id"]
    with FakeGraph([doc], secrets={tid: SECRET}, state_dir=tmp_path) as fake:
        parent = fake.add_group(tid, {"displayName": "parent"})
        direct = [fake.add_group(tid, {"displayName": f"g{i}"}, [user]) for i in range(105)]
        fake.add_members(tid, parent, [direct[0]])
        items, pages = Client(fake, doc).all_pages(f"/users/{user}/memberOf?$select=id")
    assert len(pages) == 2 and len(pages[0]["value"]) == 100
    assert {o["@odata.type"] for o in items} == {"#microsoft.graph.group"}
    ids = {o["id"] for o in items}
    assert set(direct) <= ids and parent not in ids
