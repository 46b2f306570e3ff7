"""What the benchmarks share: a scratch database, a generated tenant staged straight into
staging.*, and memory sampling (this process and the Postgres backend).

Benchmarks run as scripts (`python benchmarks/NAME.py`), so this folder is on sys.path; the
repository root is put there too, for the helpers the tests share (sync_pipeline_tests/support:
scratch databases, the fake Graph and the settings pointing at it).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests
import sqlalchemy as sa

# The tests' support package is not installed with the project: reach it from the checkout.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from sync_pipeline.core import db
from sync_pipeline.extract import staging
from sync_pipeline_tests.support.database import (
    create_database,
    database_on,
    drop_database,
)
from sync_pipeline_tests.support.fakegraph import start_fake

STAGED = ("users", "groups", "group_members", "user_managers", "user_licences")


class RssSampler(threading.Thread):
    """This process's peak RSS while a step runs: start(), the work, stop.set(), join()."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.start_rss = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)


def backend_peak_mb(pid: int) -> float | None:
    """A Postgres backend's peak RSS (VmHWM), when the server runs on this machine."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None  # the server runs elsewhere (or as a user we cannot read)
    return None


def analyze(engine: sa.Engine, *tables: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            conn.execute(sa.text(f"ANALYZE {table}"))


def stage_document(engine: sa.Engine, tenant: str, doc: dict) -> dict[str, int]:
    """A fake-Graph tenant document COPYed straight into staging.* (what an extraction
    writes), recorded in staging.extractions and analysed. Returns the rows per table."""
    users = {u["id"] for u in doc["users"]}
    groups = {g["id"] for g in doc["groups"]}
    kinds = {o["id"]: staging.member_type(o) for o in doc["other_objects"]}
    with engine.begin() as conn:
        w = staging.StagingWriter(conn, tenant)
        for table in staging.COLUMNS:
            w.clear(table)
        w.copy("users", (staging.user_row(tenant, u) for u in doc["users"]))
        w.copy("user_licences", (r for u in doc["users"] for r in staging.licence_rows(tenant, u)))
        w.copy("groups", (staging.group_row(tenant, g) for g in doc["groups"]))
        w.copy(
            "group_members",
            (
                (tenant, g, m, "user" if m in users else "group" if m in groups else kinds[m])
                for g, ms in doc["members"].items()
                for m in dict.fromkeys(ms)
            ),
        )
        w.copy("user_managers", ((tenant, u, m) for u, m in doc["managers"].items()))
        for entity in ("users", "groups", "group_members"):
            w.record(entity, w.counts[entity], 0)
    analyze(engine, *(f"staging.{t}" for t in STAGED))
    return dict(w.counts)


def scratch_database(server: str, reuse: str | None = None) -> tuple[str, str]:
    """(name, url) of a new `sp_bench_<random>` database on the server, or the kept one named:
    benchmarks never write into the database DATABASE_URL names, which others share."""
    if reuse is not None:
        if not reuse.startswith("sp_bench_"):
            raise SystemExit(f"--database {reuse!r}: only a kept sp_bench_* database is reused")
        return reuse, database_on(server, reuse)
    return create_database(server, "sp_bench_")


def add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-database", action="store_true", help="keep the scratch database")
    parser.add_argument("--database", help="reuse a kept sp_bench_* database (no generation)")


def in_scratch_database(
    args: argparse.Namespace, run: Callable[[argparse.Namespace, sa.Engine, bool], None]
) -> None:
    """run(args, engine, reused) in a scratch database, dropped afterwards unless kept."""
    server = os.environ.get("DATABASE_URL") or db.database_url()
    name, url = scratch_database(server, args.database)
    print(f"scratch database {name}")
    try:
        run(args, db.engine(url), args.database is not None)
    finally:
        if args.keep_database or args.database:
            db.engine(url).dispose()
            print(f"kept {name}: reuse it with --database {name}")
        else:
            drop_database(server, name)


def churn(fake: Any, fraction: float, seed: int) -> dict[str, int]:
    """Mutate `fraction` of the users of the fake Graph's tenant through its admin API (a day
    in a busy tenant: updates, adds, deletes, manager and membership changes). `fake` has
    `admin(method, path, body=None)` and `info["tenant_id"]` (extract.py's and sync.py's)."""
    rng = random.Random(seed)
    doc = fake.admin("GET", f"tenants/{fake.info['tenant_id']}")
    users = [u["id"] for u in doc["users"]]
    taken = set(users)
    groups = [g["id"] for g in doc["groups"]]
    n = max(10, int(len(users) * fraction))
    ops: list[dict[str, Any]] = []
    kinds = dict.fromkeys(("update", "add", "delete", "manager", "member_add", "member_remove"), 0)
    for i, uid in enumerate(rng.sample(users, n)):
        roll = i % 10
        if roll < 5:
            ops.append({"op": "update_user", "id": uid, "changes": {"jobTitle": f"T{i}"}})
            kinds["update"] += 1
        elif roll < 7:
            new = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            if new in taken:  # an existing id would replace that user, not add one
                raise SystemExit(f"churn: generated id {new} exists; use another --seed")
            taken.add(new)
            user = {"id": new, "userPrincipalName": f"new{i}@bench.example"}
            ops.append({"op": "add_user", "user": user})
            ops.append({"op": "add_members", "group_id": rng.choice(groups), "member_ids": [new]})
            kinds["add"] += 1
            kinds["member_add"] += 1
        elif roll < 9:
            reason = rng.choice(["changed", "deleted"])
            ops.append({"op": "delete_user", "id": uid, "reason": reason})
            kinds["delete"] += 1
        else:
            ops.append({"op": "set_manager", "user_id": uid, "manager_id": rng.choice(users[:50])})
            kinds["manager"] += 1
    deleted = {op["id"] for op in ops if op["op"] == "delete_user"}
    for _ in range(n // 2):
        gid = rng.choice(groups)
        members = [m for m in doc["members"][gid] if m not in deleted]
        if members:
            ops.append({"op": "remove_members", "group_id": gid, "member_ids": [members[0]]})
            kinds["member_remove"] += 1
    fake.admin("POST", f"tenants/{fake.info['tenant_id']}/mutate", {"ops": ops})
    return kinds


# -- the fake Graph, in a process of its own ----------------------------------------------------


def _serve(users: int, generate: dict[str, Any], options: dict[str, Any], pipe: Any) -> None:
    from sync_pipeline.fakegraph import generate_tenant

    doc = generate_tenant(name=f"bench-{users}", users=users, **generate)
    state = Path(tempfile.mkdtemp(prefix="sp-bench-fake-"))
    fake = start_fake([doc], state, **options)
    pipe.send(
        {
            "base_url": fake.base_url,
            "ca_path": str(fake.ca_path),
            "tenant_id": doc["tenant_id"],
            "client_id": doc["client_id"],
            "users": len(doc["users"]),
            "groups": len(doc["groups"]),
            "memberships": sum(len(m) for m in doc["members"].values()),
            "member_pages": sum(max(1, math.ceil(len(m) / 999)) for m in doc["members"].values()),
        }
    )
    del doc
    pipe.recv()
    fake.stop()
    shutil.rmtree(state, ignore_errors=True)


class Fake:
    """The fake Graph (a generated tenant; its client secret is FAKE_SECRET) served from a
    spawned process, so its CPU is not the measured process's; `admin()` calls /_admin/."""

    def __init__(
        self, users: int, tenant_seed: int = 1, domain: str | None = None, **options: Any
    ) -> None:
        # tenant_seed shapes the generated tenant; `options` go to FakeGraph (its own `seed`
        # drives injected faults)
        generate: dict[str, Any] = {"seed": tenant_seed} | ({"domain": domain} if domain else {})
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(users, generate, options, child), daemon=True)
        self.proc.start()
        self.info = self.pipe.recv()
        self.http = requests.Session()
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify (docs/graph.md)
        self.http.verify = self.info["ca_path"]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.http.request(
            method, f"{self.info['base_url']}/_admin/{path}", json=body, timeout=600
        )
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> None:
        self.pipe.send("stop")
        self.proc.join(timeout=20)
