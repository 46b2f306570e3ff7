"""Benchmark: Graph extraction, full and 1 %-churn incremental, against the fake Graph.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        nice .venv/bin/python benchmarks/extract.py [--users 10000 100000] [--no-sdk] \
        [--no-pager] [--no-incremental]

For each size a tenant is generated (`fakegraph.generate_tenant`: ~4 groups per 100 users,
~14 memberships per user) and served by the fake Graph in a process of its own, with 30 ms
latency and Graph's resource-unit limits for a tenant over 500 users (8,000 RU / 10 s). Each
measured reader also runs in a process of its own, so its peak RSS is its own:

- `ours full` / `ours incremental`: `sync_pipeline.extract.extraction.extract` into a scratch
  Postgres database (staging written, counts reconciled, delta links kept); the incremental
  run follows 1 % churn applied through the fake's admin API (user updates, adds, deletes,
  manager changes, membership adds and removals);
- `pager`: a plain sequential `requests` script (users with `$expand=manager` 100 a page,
  groups, each group's members), honouring Retry-After, writing nothing;
- `msgraph-sdk`: the official SDK paging the same way (`pip install -e '.[bench]'`; not a
  dependency of the product; `--no-sdk` leaves it out). Its memberships run is sampled
  (`--sdk-groups`, the first N groups) and extrapolated by member count when too slow.

The bucket refills (`--cooldown`) between runs. `--options` first measures the ways to read
managers and memberships (requests, RU) on a small tenant without throttling. Prints a table
and writes benchmarks/results/extract.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import requests
from benchlib import Fake, churn

from sync_pipeline_tests.support.database import new_database
from sync_pipeline_tests.support.fakegraph import FAKE_SECRET, settings_fields

RESULTS = Path(__file__).with_name("results") / "extract.json"
SECRET = FAKE_SECRET
# The Graph resource's default (sync_pipeline/defs/resources.py), not imported: Dagster's import
# would count in the reader's peak RSS.
WORKERS = 8
USER_SELECT = "id,userPrincipalName,mail,displayName,accountEnabled,userType,assignedLicenses"


def _settings(info: dict[str, Any], slug: str) -> dict[str, Any]:
    os.environ["SP_BENCH_SECRET"] = SECRET
    return settings_fields(
        slug,
        tenant_id=info["tenant_id"],
        client_id=info["client_id"],
        base_url=info["base_url"],
        ca_path=info["ca_path"],
        secret_env="SP_BENCH_SECRET",
    )


def _token(info: dict[str, Any], http: requests.Session) -> str:
    import msal

    app = msal.ConfidentialClientApplication(
        info["client_id"],
        client_credential=SECRET,
        authority=f"{info['base_url']}/{info['tenant_id']}",
        instance_discovery=False,
        http_client=http,
    )
    return app.acquire_token_for_client(scopes=[f"{info['base_url']}/.default"])["access_token"]


def _peak_mb() -> float:
    """This process's own peak RSS: VmHWM (ru_maxrss survives exec, so a spawned child would
    report its parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- the readers, each in its own process --------------------------------------------------------
def run_ours(info: dict[str, Any], database_url: str, slug: str, full: bool) -> dict[str, Any]:
    os.environ["SP_BENCH_SECRET"] = SECRET
    from sync_pipeline.core import db
    from sync_pipeline.core.settings import TenantSettings
    from sync_pipeline.extract.extraction import extract
    from sync_pipeline.graph import GraphClient

    settings = TenantSettings(**_settings(info, slug))
    client = GraphClient(settings, pool_size=max(16, 2 * WORKERS))
    started = time.perf_counter()
    with db.engine(database_url).begin() as conn:
        result = extract(client, conn, slug, full=full, workers=WORKERS)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": _peak_mb(),
        "mode": result.mode,
        "staged": result.staged,
        "changes": dict(result.changes),
        "retries": client.stats.retries,
        "throttled": client.stats.throttled,
        "budget_wait_seconds": round(client.stats.budget_wait_seconds, 2),
    }


def _get(http: requests.Session, url: str, token: str) -> dict[str, Any]:
    while True:
        resp = http.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        if resp.status_code in (429, 503):
            time.sleep(float(resp.headers.get("Retry-After", "1")))
            continue
        resp.raise_for_status()
        return resp.json()


def run_pager(info: dict[str, Any]) -> dict[str, Any]:
    """What most scripts do: one request after another, every page to the end."""
    http = requests.Session()
    http.trust_env = False
    http.verify = info["ca_path"]
    token = _token(info, http)
    base = f"{info['base_url']}/v1.0"
    started = time.perf_counter()
    counts = {"users": 0, "managers": 0, "groups": 0, "memberships": 0}

    def every(url: str) -> Any:
        while url:
            body = _get(http, url, token)
            yield body["value"]
            url = body.get("@odata.nextLink")

    select = f"$select={USER_SELECT}&$expand=manager($select=id)&$top=100"
    for page in every(f"{base}/users?{select}"):
        counts["users"] += len(page)
        counts["managers"] += sum(1 for u in page if u.get("manager"))
    group_ids = []
    for page in every(f"{base}/groups?$select=id,displayName,groupTypes&$top=999"):
        group_ids += [g["id"] for g in page]
    counts["groups"] = len(group_ids)
    for gid in group_ids:
        for page in every(f"{base}/groups/{gid}/members?$select=id&$top=999"):
            counts["memberships"] += len(page)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": _peak_mb(),
        "counts": counts,
    }


def run_sdk(info: dict[str, Any], sample_pages: int, sample_groups: int) -> dict[str, Any]:
    """The official msgraph-sdk, paging the straightforward way; sampled (first user pages,
    first groups' members) and extrapolated: it deserialises every object into models."""
    import httpx
    from azure.core.credentials import AccessToken
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
    from msgraph.generated.users.users_request_builder import UsersRequestBuilder
    from msgraph_core import GraphClientFactory

    http = requests.Session()
    http.trust_env = False
    http.verify = info["ca_path"]
    token = _token(info, http)

    class Credential:  # azure-identity's protocol, served from the msal token above
        def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
            return AccessToken(token, int(time.time()) + 3000)

        async def close(self) -> None:
            return None

        async def __aenter__(self) -> Any:
            return self

        async def __aexit__(self, *exc: Any) -> None:
            return None

    host = info["base_url"].split("//", 1)[1].split(":")[0]

    async def main() -> dict[str, Any]:
        client_http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=info["ca_path"], timeout=120)
        )
        auth = AzureIdentityAuthenticationProvider(
            Credential(), scopes=[f"{info['base_url']}/.default"], allowed_hosts=[host]
        )
        adapter = GraphRequestAdapter(auth, client_http)
        adapter.base_url = f"{info['base_url']}/v1.0"
        graph = GraphServiceClient(request_adapter=adapter)
        counts = {"users": 0, "managers": 0, "groups": 0, "memberships": 0}
        started = time.perf_counter()
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=USER_SELECT.split(","), expand=["manager($select=id)"], top=100
        )
        page = await graph.users.get(RequestConfiguration(query_parameters=query))
        pages = 1
        while page is not None:
            counts["users"] += len(page.value or [])
            counts["managers"] += sum(1 for u in page.value or [] if u.manager)
            if not page.odata_next_link or pages >= sample_pages:
                break
            page = await graph.users.with_url(page.odata_next_link).get()
            pages += 1
        users_seconds = time.perf_counter() - started
        gquery = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
            select=["id", "displayName", "groupTypes"], top=999
        )
        gpage = await graph.groups.get(RequestConfiguration(query_parameters=gquery))
        group_ids: list[str] = []
        while gpage is not None:
            group_ids += [g.id for g in gpage.value or []]
            if not gpage.odata_next_link:
                break
            gpage = await graph.groups.with_url(gpage.odata_next_link).get()
        counts["groups"] = len(group_ids)
        sample = group_ids[:sample_groups]
        mstart = time.perf_counter()
        for gid in sample:
            mpage = await graph.groups.by_group_id(gid).members.get()
            while mpage is not None:
                counts["memberships"] += len(mpage.value or [])
                if not mpage.odata_next_link:
                    break
                mpage = (
                    await graph.groups.by_group_id(gid)
                    .members.with_url(mpage.odata_next_link)
                    .get()
                )
        members_seconds = time.perf_counter() - mstart
        return {
            "sampled_users": counts["users"],
            "sampled_users_seconds": round(users_seconds, 2),
            "sampled_groups": len(sample),
            "sampled_memberships": counts["memberships"],
            "sampled_members_seconds": round(members_seconds, 2),
            "counts": counts,
        }

    out = asyncio.run(main())
    out["peak_rss_mb"] = _peak_mb()
    return out


def _in_child(fn: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


# -- the options for managers and memberships ------------------------------------------------------
def options(users: int) -> list[dict[str, Any]]:
    """Requests and RU of each way to read managers and memberships (no throttle, no latency)."""
    fake = Fake(users)
    info = fake.info
    http = requests.Session()
    http.trust_env = False
    http.verify = info["ca_path"]
    token = _token(info, http)
    base = f"{info['base_url']}/v1.0"
    auth = {"Authorization": f"Bearer {token}"}
    doc = fake.admin("GET", f"tenants/{info['tenant_id']}")
    user_ids = [u["id"] for u in doc["users"]]
    group_ids = [g["id"] for g in doc["groups"]]
    rows = []

    def measure(name: str, work: Any) -> None:
        fake.admin("POST", "stats/reset")
        note = work() or ""
        s = fake.admin("GET", "stats")
        graph_requests = sum(
            v for k, v in s["requests"].items() if "/v1.0" in k and "(batch)" not in k
        )
        units = s["resource_units"]
        row = {"option": name, "http_requests": graph_requests, "resource_units": units}
        rows.append({**row, "note": note})

    def pages(url: str) -> Any:
        while url:
            body = http.get(url, headers=auth).json()
            if "error" in body:
                return body["error"]["code"]
            url = body.get("@odata.nextLink")
        return None

    def batch(urls: list[str]) -> None:
        for i in range(0, len(urls), 20):
            reqs = [
                {"id": str(n), "method": "GET", "url": u} for n, u in enumerate(urls[i : i + 20])
            ]
            http.post(f"{base}/$batch", json={"requests": reqs}, headers=auth).raise_for_status()

    measure(
        "managers: GET /users/{id}/manager per user",
        lambda: (
            [http.get(f"{base}/users/{u}/manager?$select=id", headers=auth) for u in user_ids]
            and None
        ),
    )
    measure(
        "managers: /users?$select=id&$expand=manager($select=id), 100 a page",
        lambda: pages(f"{base}/users?$select=id&$expand=manager($select=id)&$top=100"),
    )
    measure(
        "managers: $batch of 20 x /users/{id}/manager",
        lambda: batch([f"/users/{u}/manager?$select=id" for u in user_ids]),
    )
    measure(
        "managers: /users/delta?$select=id,manager",
        lambda: pages(f"{base}/users/delta?$select=id,manager"),
    )
    measure(
        "members: GET /groups/{id}/members?$select=id&$top=999 per group",
        lambda: (
            [pages(f"{base}/groups/{g}/members?$select=id&$top=999") for g in group_ids] and None
        ),
    )
    measure(
        "members: $batch of 20 x /groups/{id}/members",
        lambda: batch([f"/groups/{g}/members?$select=id&$top=999" for g in group_ids]),
    )
    measure(
        "members: /groups/delta?$select=id,members (members@delta)",
        lambda: pages(f"{base}/groups/delta?$select=id,displayName,members"),
    )
    fake.stop()
    return rows


# -- the run ---------------------------------------------------------------------------------------
def bench(users: int, args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    fake = Fake(users, latency=args.latency, throttle=True, seed=1)
    info = fake.info
    slug = f"bench-extract-{users}"
    out: dict[str, Any] = {
        "users": users,
        "groups": info["groups"],
        "memberships": info["memberships"],
    }

    def measured(name: str, fn: Any, *fargs: Any) -> dict[str, Any]:
        time.sleep(args.cooldown)  # a full bucket for every reader
        fake.admin("POST", "stats/reset")
        load = [round(x, 2) for x in os.getloadavg()]  # other work on the machine, 1/5/15 min
        row = _in_child(fn, *fargs)
        row["load_average_before"] = load
        stats = fake.admin("GET", "stats")
        row["requests"] = sum(v for k, v in stats["requests"].items() if "/v1.0" in k)
        row["http_requests"] = sum(
            v for k, v in stats["requests"].items() if "/v1.0" in k and "(batch)" not in k
        )
        row["resource_units"] = stats["resource_units"]
        row["graph_429"] = stats["throttled"]
        out[name] = row
        print(f"  {name:18} {row['seconds'] if 'seconds' in row else '-':>8} s  "
              f"{row['http_requests']:>7} calls  {row['resource_units']:>7} RU  "
              f"{row['peak_rss_mb']:>7} MB", flush=True)  # fmt: skip
        return row

    print(f"{users} users, {info['groups']} groups, {info['memberships']} memberships", flush=True)
    measured("ours_full", run_ours, info, database_url, slug, True)
    if not args.no_incremental:
        out["churn"] = churn(fake, 0.01, seed=users)
        measured("ours_incremental", run_ours, info, database_url, slug, False)
    delta_pages = math.ceil(users / 200)
    out["floor_full_http_requests"] = (
        # managers come with the users delta pages (`manager@delta`): no chain of their own
        delta_pages + math.ceil(info["groups"] / 200)
        + math.ceil(info["groups"] / 20) + (info["member_pages"] - info["groups"]) + 1 + 3
        + 1  # the groups members link ($deltatoken=latest) a batched full read takes first
    )  # fmt: skip
    if not args.no_pager:
        measured("pager", run_pager, info)
    if not args.no_sdk and users <= args.sdk_max_users:
        row = measured("sdk", run_sdk, info, args.sdk_pages, args.sdk_groups)
        members = max(row["sampled_memberships"], 1) / info["memberships"]
        users_part = max(row["sampled_users"], 1) / users
        row["seconds"] = round(
            row["sampled_users_seconds"] / users_part + row["sampled_members_seconds"] / members,
            1,
        )
        row["extrapolated"] = members < 1 or users_part < 1
        print(f"  {'sdk (extrapolated)':18} {row['seconds']:>8} s", flush=True)
    fake.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000])
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--cooldown", type=float, default=11.0)
    parser.add_argument("--sdk-pages", type=int, default=5, help="user pages the SDK reads")
    parser.add_argument("--sdk-groups", type=int, default=5, help="groups the SDK reads")
    parser.add_argument("--sdk-max-users", type=int, default=10_000, help="no SDK above")
    parser.add_argument("--no-sdk", action="store_true")
    parser.add_argument("--no-pager", action="store_true")
    parser.add_argument("--no-incremental", action="store_true", help="measure the full read only")
    parser.add_argument("--options", type=int, default=0, help="measure the options first")
    args = parser.parse_args()
    if not args.no_sdk and importlib.util.find_spec("msgraph") is None:
        raise SystemExit(
            "the msgraph-sdk peer is not installed: `.venv/bin/pip install -e '.[bench]'`, "
            "or pass --no-sdk to leave it out"
        )
    from sync_pipeline.core import db

    server = os.environ.get("DATABASE_URL") or db.database_url()
    results: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cpu",
                               "latency_s": args.latency, "runs": []}  # fmt: skip
    with new_database(server, "sp_bench_") as url:
        db.upgrade(db.engine(url))
        if args.options:
            results["options"] = options(args.options)
            for row in results["options"]:
                figures = f"{row['http_requests']:>7} {row['resource_units']:>7}"
                print(f"  {row['option']:70} {figures} {row['note']}")
        for users in args.users:
            results["runs"].append(bench(users, args, url))
            save(results)
    save(results)
    print(f"written to {RESULTS}")


def save(results: dict[str, Any]) -> None:
    """Merge into the results file (one entry per tenant size), so sizes can run apart."""
    RESULTS.parent.mkdir(exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for run in results["runs"]:  # a rerun without a peer keeps that peer's earlier figures
        previous[str(run["users"])] = {**previous.get(str(run["users"]), {}), **run}
    if "options" in results:
        previous["options"] = results["options"]
    previous["machine"], previous["latency_s"] = results["machine"], results["latency_s"]
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")


if __name__ == "__main__":
    main()
