"""Benchmark: a fleet of small tenants synced by the daemon's schedule, as production runs them.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        flock /tmp/bench.lock .venv/bin/python benchmarks/fleet.py [--tenants 1000] \
        [--executor celery --workers 2] [--max-minutes 40]

One fake Graph process serves N generated tenants (100-500 users each, Graph's resource-unit
limits on, 30 ms latency) that all share ONE app registration (one client id), so they spend
one per-app budget (150,000 RU / 20 s, docs/graph.md). A scratch database `sp_bench_<random>`
holds the data and the Dagster instance (the packaged dagster.yaml: the run queue's limits,
one run per tenant). The production topology runs beside it, from this checkout: a gRPC code
server (`dagster code-server start -m sync_pipeline.definitions`), a webserver and a daemon
loading it through deploy/workspace.yaml. Every tenant is registered due at the same schedule
tick and the schedule is stored as running since before that tick (test_topology.py's
technique, docs/operations.md), so the daemon's first iteration requests all N daily syncs;
the run queue dequeues them and the run launcher starts each run in a process of its own
under the code server. `--failing K` tenants carry a wrong client secret: their runs fail.

Measured: the total wall time (daemon start to the last run's end), tenant-syncs per hour,
per-run wall (run record start to end) and queue wait, per-run CPU (the run worker process,
sampled every 0.2 s from the code server's process tree; the exact total of every exited
worker is the code server's children CPU), the other processes' CPU, the Postgres database
size, Graph calls, 429s and resource units per tenant (the fake's admin stats). Checked: never
two runs of a tenant at once (run records' start/end), the failing tenants do not keep the
others from finishing, every run tagged with its tenant and partition and shown per tenant by
the webserver's GraphQL API. `--max-minutes` caps the wait; the report then says how many
finished and projects the total. Prints a table and merges the figures into
benchmarks/results/fleet.json under the executor's name, with the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil
import requests
import sqlalchemy as sa
from benchlib import scratch_database
from rich.console import Console
from rich.table import Table

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.registry import tenants
from sync_pipeline_tests.support.database import drop_database, save_tenant
from sync_pipeline_tests.support.fakegraph import FAKE_SECRET, settings_fields
from sync_pipeline_tests.support.topology import LOCATION, SCHEDULE, TICK, start_schedule_since

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results") / "fleet.json"
WORKSPACE = ROOT / "deploy" / "workspace.yaml"
VENV_BIN = Path(sys.executable).parent
SECRET_ENV = "SP_FLEET_SECRET"
WRONG_SECRET_ENV = "SP_FLEET_WRONG_SECRET"  # the failing tenants' (a secret that was rotated)
console = Console(highlight=False)


# -- helpers (pure; `--self-test` runs them) -----------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0-100), linear between closest ranks; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (k - lo), 3)


def overlaps(spans: list[tuple[str, float, float]]) -> list[tuple[str, str]]:
    """Pairs of runs (ids) of one tenant whose [start, end] intervals intersect; `spans` holds
    one tenant's (run id, start, end)."""
    out = []
    ordered = sorted(spans, key=lambda s: s[1])
    for (a, _, a_end), (b, b_start, _) in itertools.pairwise(ordered):
        if b_start < a_end:
            out.append((a, b))
    return out


def slot_and_start(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Every tenant's sync_time, and the schedule's start: as test_topology.py, the schedule
    has been running since before the last tick (as after a daemon restart), so the daemon's
    first iteration catches that tick up; when the next tick is close it is used instead."""
    last = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    slot = last + TICK if last + TICK - now < dt.timedelta(seconds=90) else last
    return slot, last - dt.timedelta(minutes=1)


def self_test() -> None:
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 95) == 5
    assert percentile(list(range(101)), 95) == 95
    assert overlaps([("a", 0, 10), ("b", 10, 20)]) == []
    assert overlaps([("a", 0, 10), ("b", 5, 20), ("c", 30, 40)]) == [("a", "b")]
    now = dt.datetime(2026, 1, 1, 7, 3, 10, tzinfo=dt.UTC)
    assert slot_and_start(now) == (
        now.replace(minute=0, second=0),
        now.replace(hour=6, minute=59, second=0),
    )
    late = dt.datetime(2026, 1, 1, 7, 4, 0, tzinfo=dt.UTC)
    assert slot_and_start(late)[0] == late.replace(minute=5, second=0)
    print("fleet.py self-test: ok")


# -- the fake Graph, N tenants of one app, in a process of its own --------------------------------


def _serve(
    n: int, seed: int, low: int, high: int, latency: float, options: dict[str, Any], pipe: Any
) -> None:
    from sync_pipeline.fakegraph import generate_tenant
    from sync_pipeline_tests.support.fakegraph import start_fake

    rng = random.Random(seed)
    app = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # one multi-tenant app
    docs = []
    for i in range(n):
        doc = generate_tenant(name=f"fleet-{i:05d}", users=rng.randint(low, high), seed=seed + i)
        doc["client_id"] = app
        docs.append(doc)
    state = Path(tempfile.mkdtemp(prefix="sp-fleet-fake-"))
    fake = start_fake(docs, state, throttle=True, latency=latency, **options)
    pipe.send(
        {
            "base_url": fake.base_url,
            "ca_path": str(fake.ca_path),
            "client_id": app,
            "tenants": [(d["tenant_id"], len(d["users"])) for d in docs],
            "pid": os.getpid(),
        }
    )
    del docs
    pipe.recv()
    fake.stop()
    shutil.rmtree(state, ignore_errors=True)


class FleetFake:
    """N generated tenants of one app on one fake Graph process; `options` go to FakeGraph
    (e.g. `notification_ca`, the CA it verifies a notification receiver with)."""

    def __init__(
        self, n: int, seed: int, low: int, high: int, latency: float, **options: Any
    ) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_serve, args=(n, seed, low, high, latency, options, child), daemon=True
        )
        self.proc.start()
        self.info = self.pipe.recv()
        self.http = requests.Session()
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify (docs/graph.md)
        self.http.verify = self.info["ca_path"]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.info['base_url']}/_admin/{path}"
        resp = self.http.request(method, url, json=body, timeout=600)
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> None:
        self.pipe.send("stop")
        self.proc.join(timeout=20)


# -- the topology -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """One long-running process, in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args, env=env, cwd=logs, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.ps = psutil.Process(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def cpu(self) -> float:
        """CPU seconds of the process tree: each live process's own and its exited children's
        that it waited for (an exited run worker counts in its parent's)."""
        total = 0.0
        try:
            procs = [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for proc in procs:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def stop(self) -> None:
        for signum, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # the leader is gone; children of the group may not be
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(what: str, check: Any, timeout: float, services: list[Service]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        for s in services:
            if not s.alive():
                raise SystemExit(f"{s.name} exited:\n{s.tail()}")
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(1)


def graphql(base: str, query: str, **variables: Any) -> dict:
    resp = requests.post(
        f"{base}/graphql", json={"query": query, "variables": variables}, timeout=60
    )
    resp.raise_for_status()
    body = resp.json()
    if "errors" in body:
        raise RuntimeError(body["errors"])
    return body["data"]


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries {
  name locationOrLoadError { __typename
    ... on RepositoryLocation { repositories { schedules { name } } } } } } } }"""

TENANT_RUNS = """query ($slug: String!) {
  runsOrError(filter: {tags: [{key: "tenant", value: $slug}]}) { __typename
  ... on Runs { results { runId status tags { key value } } } } }"""


def schedule_loaded(base: str) -> bool:
    try:
        data = graphql(base, LOCATIONS)
    except (requests.RequestException, ValueError, RuntimeError):
        return False
    for entry in data["workspaceOrError"].get("locationEntries", []):
        location = entry["locationOrLoadError"] or {}
        if entry["name"] == LOCATION and location.get("__typename") == "RepositoryLocation":
            return SCHEDULE in {s["name"] for r in location["repositories"] for s in r["schedules"]}
    return False


class CpuSampler:
    """Every 0.2 s: the CPU seconds of each descendant of the given roots, by pid (a process's
    last sample before it exits is its figure, at most 0.2 s short)."""

    def __init__(self, roots: list[psutil.Process]) -> None:
        self.roots = roots
        self.last: dict[int, float] = {}

    def sample(self) -> None:
        for root in self.roots:
            try:
                children = root.children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                try:
                    t = child.cpu_times()
                except psutil.Error:
                    continue
                self.last[child.pid] = t.user + t.system


def start_topology(
    work: Path, url: str, services: list[Service], extra_env: dict[str, str]
) -> tuple[dict[str, str], str]:
    """The production topology from this checkout, on the database at `url`: the schema
    upgraded, a gRPC code server and a webserver loading it through deploy/workspace.yaml
    (appended to `services` as they start, so that the caller stops them). Returns the
    services' environment (a DAGSTER_HOME in `work` with the packaged dagster.yaml, plus
    `extra_env`) and the webserver's address, once it lists the schedule."""
    dagster_home = work / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "sync_pipeline" / "dagster.yaml", dagster_home / "dagster.yaml")
    code_port, web_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PYTHONPATH")}
    env |= {
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),  # this checkout's sync_pipeline, not the editable install's
        "DAGSTER_HOME": str(dagster_home),
        "DATABASE_URL": url,
        "SYNC_PIPELINE_HOME": str(work / "state"),
        "SYNC_PIPELINE_CODE_SERVER_HOST": "127.0.0.1",
        "SYNC_PIPELINE_CODE_SERVER_PORT": str(code_port),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "GX_ANALYTICS_ENABLED": "False",
    } | extra_env
    subprocess.run(
        [sys.executable, "-m", "sync_pipeline.cli", "db", "upgrade"],
        env=env, cwd=work, check=True, capture_output=True,
    )  # fmt: skip
    code = Service(
        "code-server",
        [str(VENV_BIN / "dagster"), "code-server", "start", "-m", "sync_pipeline.definitions",
         "-h", "127.0.0.1", "-p", str(code_port), "--location-name", LOCATION],
        env, work,
    )  # fmt: skip
    services.append(code)
    health = [str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1"]
    health += ["-p", str(code_port)]
    wait_for(
        "the code server",
        lambda: subprocess.run(health, env=env, capture_output=True).returncode == 0,
        240,
        services,
    )
    web = Service(
        "webserver",
        [str(VENV_BIN / "dagster-webserver"), "-w", str(WORKSPACE), "-h", "127.0.0.1",
         "-p", str(web_port)],
        env, work,
    )  # fmt: skip
    services.append(web)
    base = f"http://127.0.0.1:{web_port}"
    wait_for("the webserver", lambda: schedule_loaded(base), 240, services)
    return env, base


def open_instance(env: dict[str, str]) -> Any:
    """The Dagster instance the services use, opened in this process (their storage, their
    code server for the schedule's origin)."""
    import dagster as dg

    os.environ["SYNC_PIPELINE_DAGSTER_PG_URL"] = db.with_driver(env["DATABASE_URL"], "psycopg2")
    for key in ("SYNC_PIPELINE_CODE_SERVER_HOST", "SYNC_PIPELINE_CODE_SERVER_PORT"):
        os.environ[key] = env[key]
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def start_daemon(services: list[Service], env: dict[str, str], work: Path) -> Service:
    daemon = Service(
        "daemon", [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)], env, work
    )
    services.append(daemon)
    return daemon


def run_facts(script: str, load_start: tuple[float, float, float]) -> dict[str, Any]:
    """What a result says of its run: the command, the load, the machine, the date."""
    return {
        "command": " ".join([f"benchmarks/{script}", *sys.argv[1:]]),
        "load_average_start": [round(x, 2) for x in load_start],
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def tear_down(
    services: list[Service],
    fake: FleetFake,
    engine: sa.Engine,
    scratch: tuple[str, str, Path],
    *,
    keep: bool,
) -> None:
    """The services stopped (the last started first), the fake too; the scratch database
    (server URL, name) and the work folder dropped unless kept."""
    server, name, work = scratch
    for s in reversed(services):
        s.stop()
    fake.stop()
    engine.dispose()
    if keep:
        console.print(f"kept {name} and {work}")
    else:
        drop_database(server, name)
        shutil.rmtree(work, ignore_errors=True)


# -- the benchmark ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    server = os.environ.get("DATABASE_URL") or db.database_url()
    load_start = os.getloadavg()
    t_setup = time.monotonic()
    console.print(f"generating and serving {args.tenants} tenants on one fake Graph ...")
    fake = FleetFake(args.tenants, args.seed, args.min_users, args.max_users, args.latency)
    name, url = scratch_database(server)
    console.print(f"scratch database {name}")
    work = Path(tempfile.mkdtemp(prefix="sp-fleet-"))
    services: list[Service] = []
    engine = db.engine(url)
    result: dict[str, Any] = {}
    extra_env = {SECRET_ENV: FAKE_SECRET, WRONG_SECRET_ENV: "a-secret-that-was-rotated"}
    if args.executor == "celery":
        extra_env["SYNC_PIPELINE_CELERY_BROKER"] = args.broker
    try:
        if args.executor == "celery":
            import redis

            redis.Redis.from_url(args.broker).flushdb()
        env, base = start_topology(work, url, services, extra_env)

        workers: list[Service] = []
        if args.executor == "celery":
            config = work / "celery.yaml"
            config.write_text(
                f"execution:\n  config:\n    broker: {args.broker}\n    backend: {args.broker}\n"
            )
            for i in range(args.workers):
                w = Service(
                    f"celery-w{i + 1}",
                    [sys.executable, "-m", "dagster_celery.cli", "worker", "start",
                     "-A", "dagster_celery.app", "-y", str(config), "-n", f"w{i + 1}",
                     "--", "--concurrency=1", "--pool=solo"],
                    env, work,
                )  # fmt: skip
                workers.append(w)
            services += workers
            wait_for(
                "the celery workers",
                lambda: all("ready" in w.log.read_text(errors="replace") for w in workers),
                180,
                services,
            )

        # The registry: every tenant due at the same tick; a few with a wrong secret.
        instance = open_instance(env)
        rng = random.Random(args.seed)
        failing = set(rng.sample(range(args.tenants), min(args.failing, args.tenants)))
        slugs, users_of = [], {}
        slot, since = slot_and_start(dt.datetime.now(dt.UTC))
        for i, (tenant_id, users) in enumerate(fake.info["tenants"]):
            slug = f"fleet-{i:05d}"
            fields = settings_fields(
                slug,
                tenant_id=tenant_id,
                client_id=fake.info["client_id"],
                base_url=fake.info["base_url"],
                ca_path=fake.info["ca_path"],
                secret_env=WRONG_SECRET_ENV if i in failing else SECRET_ENV,
            )
            fields |= {"auto_sync": True, "timezone": "UTC", "sync_time": slot.time()}
            save_tenant(engine, TenantSettings(**fields))
            slugs.append(slug)
            users_of[slug] = users
        failing_slugs = {slugs[i] for i in failing}
        instance.add_dynamic_partitions("tenant", slugs)
        start_schedule_since(instance, since)
        setup_seconds = time.monotonic() - t_setup
        console.print(
            f"set up in {setup_seconds:.0f} s; {len(slugs)} tenants due at {slot:%H:%M} UTC "
            f"({len(failing_slugs)} with a wrong secret); starting the daemon"
        )

        fake_ps = psutil.Process(fake.info["pid"])
        sampler = CpuSampler([services[0].ps] + [w.ps for w in workers])
        daemon: Service | None = None
        rounds = []
        for number in range(1, args.rounds + 1):
            if number > 1:  # the next day's syncs: the same tenants, due again at a tick
                slot = reschedule(engine, slugs, dt.datetime.now(dt.UTC))
                console.print(f"round {number}: every tenant due again at {slot:%H:%M} UTC")
            fake.admin("POST", "stats/reset")
            round_start = time.time()
            cpu_before = {s.name: s.cpu() for s in services}
            fake_cpu0 = sum(fake_ps.cpu_times()[:2])
            load_start_round = os.getloadavg()
            if daemon is None:
                daemon = start_daemon(services, env, work)
                cpu_before["daemon"] = 0.0
            waited = wait_round(
                instance, services, sampler, len(slugs), round_start, slot, args.max_minutes
            )
            cpu_after = {s.name: s.cpu() for s in services}
            measured = collect(
                instance,
                base,
                engine,
                fake,
                rng,
                slugs=slugs,
                failing=failing_slugs,
                round_start=round_start,
                round_end=waited["end"],
                capped=waited["capped"],
                cpu={k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
                fake_cpu=sum(fake_ps.cpu_times()[:2]) - fake_cpu0,
                sampler=sampler,
                workers=[w.name for w in workers],
            )
            measured["round"] = number
            measured["kind"] = "first sync (initial read)" if number == 1 else "daily, unchanged"
            measured["load_average"] = {
                "start": [round(x, 2) for x in load_start_round],
                "end": [round(x, 2) for x in os.getloadavg()],
            }
            show(measured, args, len(slugs))
            rounds.append(measured)
            if waited["capped"]:
                break
        result = {
            "executor": args.executor,
            "workers": args.workers if args.executor == "celery" else None,
            "tenants": len(slugs),
            "failing_tenants": len(failing_slugs),
            "users_per_tenant": [args.min_users, args.max_users],
            "users_total": sum(users_of.values()),
            "latency_seconds": args.latency,
            "max_minutes": args.max_minutes,
            "setup_seconds": round(setup_seconds, 1),
            "rounds": rounds,
            "process_floor": process_floor(env),
        } | run_facts("fleet.py", load_start)
        instance.dispose()
        return result
    finally:
        tear_down(services, fake, engine, (server, name, work), keep=args.keep_database)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM end the benchmark through its clean-up (services stopped, the
    scratch database dropped)."""

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit)


FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
UNFINISHED = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def reschedule(engine: sa.Engine, slugs: list[str], now: dt.datetime) -> dt.datetime:
    """Every tenant due at the next tick again, on another local day (a zone 12 hours off UTC,
    so the day's run key is new): the next day's sync. Returns the tick."""
    slot = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=5 - now.minute % 5)
    zone = "Etc/GMT+12" if now.hour < 12 else "Etc/GMT-12"  # local day: yesterday / tomorrow
    local = slot.astimezone(ZoneInfo(zone)).time()
    with engine.begin() as conn:
        for slug in slugs:
            current = tenants.get(conn, slug).settings
            tenants.save(conn, current.model_copy(update={"timezone": zone, "sync_time": local}))
    return slot


def wait_round(
    instance: Any,
    services: list[Service],
    sampler: CpuSampler,
    n: int,
    round_start: float,
    slot: dt.datetime,
    max_minutes: float,
) -> dict[str, Any]:
    """Until every run the round's tick requested has finished, or the cap."""
    import dagster as dg

    stop_on_signals()  # again: Dagster's imports install handlers of their own
    created = dt.datetime.fromtimestamp(round_start, dt.UTC)
    finished = [dg.DagsterRunStatus(s) for s in FINISHED]
    unfinished = [dg.DagsterRunStatus(s) for s in UNFINISHED]
    deadline = max(round_start, slot.timestamp()) + max_minutes * 60
    last_print = 0.0
    while True:
        for s in services:
            if not s.alive():
                raise SystemExit(f"{s.name} exited:\n{s.tail()}")
        sampler.sample()
        now = time.time()
        if now - last_print > 15:
            last_print = now
            f = dg.RunsFilter(job_name="sync", statuses=finished, created_after=created)
            done = instance.get_runs_count(f)
            total = instance.get_runs_count(dg.RunsFilter(job_name="sync", created_after=created))
            console.print(
                f"  {now - round_start:6.0f} s: {done}/{n} finished, {total} requested, "
                f"load {os.getloadavg()[0]:.1f}"
            )
            if done >= n:
                f = dg.RunsFilter(job_name="sync", statuses=unfinished, created_after=created)
                if instance.get_runs_count(f) == 0:
                    return {"end": now, "capped": False}
        if now > deadline:
            return {"end": now, "capped": True}
        time.sleep(0.2)


def collect(
    instance: Any,
    base: str,
    engine: sa.Engine,
    fake: FleetFake,
    rng: random.Random,
    *,
    slugs: list[str],
    failing: set[str],
    round_start: float,
    round_end: float,
    capped: bool,
    cpu: dict[str, float],
    fake_cpu: float,
    sampler: CpuSampler,
    workers: list[str],
) -> dict[str, Any]:
    """The round's figures and checks, from the run records, the fake's stats, the UI's
    GraphQL API and the database."""
    import dagster as dg

    stats = fake.admin("GET", "stats")
    created = dt.datetime.fromtimestamp(round_start, dt.UTC)
    records = instance.get_run_records(dg.RunsFilter(job_name="sync", created_after=created))
    per_run: list[dict[str, Any]] = []
    spans: dict[str, list[tuple[str, float, float]]] = {}
    untagged = 0
    for rec in records:
        r = rec.dagster_run
        tenant = r.tags.get("tenant")
        if tenant is None or r.tags.get("dagster/partition") != tenant:
            untagged += 1
        pid = None
        for ev in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.RUN_START):
            pid = ev.dagster_event.pid
        per_run.append(
            {
                "tenant": tenant,
                "status": r.status.value,
                "created": rec.create_timestamp.timestamp(),
                "start": rec.start_time,
                "end": rec.end_time,
                "scheduled": r.tags.get("dagster/schedule_name") == SCHEDULE,
                "cpu": sampler.last.get(pid) if pid else None,
            }
        )
        if rec.start_time and tenant:
            spans.setdefault(tenant, []).append(
                (r.run_id, rec.start_time, rec.end_time or round_end)
            )
    done = [r for r in per_run if r["end"] and r["status"] in FINISHED]
    ok = [r for r in done if r["status"] == "SUCCESS"]
    failed = [r for r in done if r["status"] != "SUCCESS"]
    walls = [r["end"] - r["start"] for r in ok]
    fail_walls = [r["end"] - r["start"] for r in failed if r["start"]]
    waits = [r["start"] - r["created"] for r in done if r["start"]]
    cpus = [r["cpu"] for r in ok if r["cpu"] is not None]
    first_request = min((r["created"] for r in per_run), default=round_start)
    last_end = max((r["end"] for r in done), default=round_end)
    busy = (round_end if capped else last_end) - first_request
    per_hour = len(done) / busy * 3600 if busy > 0 else 0.0
    double = {t: overlaps(s) for t, s in spans.items() if overlaps(s)}
    healthy_done = {r["tenant"] for r in ok} - failing
    fail_end = max((r["end"] for r in failed), default=None)

    sample = slugs if len(slugs) <= 100 else sorted(rng.sample(slugs, 100))
    shown = 0
    for slug in sample:
        got = graphql(base, TENANT_RUNS, slug=slug)["runsOrError"]["results"]
        tags = [{t["key"]: t["value"] for t in g["tags"]} for g in got]
        shown += bool(got) and all(t.get("dagster/partition") == slug for t in tags)

    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
        event_rows = conn.execute(sa.text("SELECT count(*) FROM event_logs")).scalar_one()
        run_rows = conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
    by_id = {tid: slug for slug, (tid, _) in zip(slugs, fake.info["tenants"], strict=True)}
    calls = {by_id[t]: n for t, n in stats["graph_calls_by_tenant"].items()}
    t429 = {by_id[t]: n for t, n in stats["throttled_by_tenant"].items()}
    ru = {by_id[t]: n for t, n in stats["resource_units_by_tenant"].items()}
    run_worker_cpu = cpu.get("code-server", 0.0)
    return {
        "capped": capped,
        "total_wall_seconds": round(busy, 1),
        "daemon_or_round_start_to_first_request_seconds": round(first_request - round_start, 1),
        "runs_requested": len(per_run),
        "runs_finished": len(done),
        "runs_succeeded": len(ok),
        "runs_failed": len(failed),
        "tenant_syncs_per_hour": round(per_hour, 1),
        "projected_total_minutes": round(len(slugs) / per_hour * 60, 1) if per_hour else None,
        "run_wall_seconds": {"p50": percentile(walls, 50), "p95": percentile(walls, 95)},
        "failed_run_wall_seconds": {
            "p50": percentile(fail_walls, 50),
            "p95": percentile(fail_walls, 95),
        },
        "queue_wait_seconds": {"p50": percentile(waits, 50), "p95": percentile(waits, 95)},
        "run_cpu_seconds": {
            "p50": percentile(cpus, 50),
            "p95": percentile(cpus, 95),
            "sampled_runs": len(cpus),
        },
        "cpu_seconds": {
            "run_workers_total": round(run_worker_cpu, 1),
            "run_workers_per_run": round(run_worker_cpu / len(done), 2) if done else None,
            "celery_workers": round(sum(cpu.get(w, 0.0) for w in workers), 1) if workers else None,
            "daemon": round(cpu.get("daemon", 0.0), 1),
            "webserver": round(cpu.get("webserver", 0.0), 1),
            "fake_graph": round(fake_cpu, 1),
        },
        "graph": {
            "calls_per_tenant": {
                "p50": percentile([calls.get(s, 0) for s in healthy_done], 50),
                "p95": percentile([calls.get(s, 0) for s in healthy_done], 95),
            },
            "resource_units_per_tenant_sync": {
                "p50": percentile([ru.get(s, 0) for s in healthy_done], 50),
                "p95": percentile([ru.get(s, 0) for s in healthy_done], 95),
            },
            "throttled_429_total": stats["throttled"],
            "tenants_with_429": sum(1 for n in t429.values() if n),
            "max_429_per_tenant": max(t429.values(), default=0),
            "resource_units_total": stats["resource_units"],
            "graph_calls_total": sum(calls.values()),
        },
        "postgres": {
            "database_mb": round(size / 2**20, 1),
            "runs_rows": run_rows,
            "event_log_rows": event_rows,
        },
        "limits": {
            "tenants_with_overlapping_runs": len(double),
            "healthy_tenants_failed": sorted(
                r["tenant"] for r in failed if r["tenant"] not in failing
            ),
            "healthy_tenants_not_done": len(set(slugs) - failing - healthy_done),
            "failing_tenants_that_succeeded": sorted(
                r["tenant"] for r in ok if r["tenant"] in failing
            ),
            "last_failure_end_seconds": round(fail_end - first_request, 1) if fail_end else None,
            "runs_without_tenant_partition_tags": untagged,
            "runs_not_from_the_schedule": sum(1 for r in per_run if not r["scheduled"]),
            "tenants_shown_by_the_ui": f"{shown}/{len(sample)}",
        },
    }


def process_floor(env: dict[str, str]) -> dict[str, float]:
    """CPU seconds a run worker pays before any work: a bare interpreter, and one that imports
    the code location (dagster, the definitions), each in a fresh process (median of 3)."""
    out = {}
    for name, code in (
        ("python", "pass"),
        ("import_definitions", "import sync_pipeline.definitions"),
    ):
        times = []
        for _ in range(3):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        out[f"{name}_cpu_seconds"] = round(sorted(times)[1], 2)
    return out


def show(r: dict[str, Any], args: argparse.Namespace, n: int) -> None:
    title = f"fleet: {n} tenants, {args.executor}"
    if args.executor == "celery":
        title += f" ({args.workers} workers)"
    t = Table(title=f"{title}, round {r.get('round', 1)}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    g, c, lim = r["graph"], r["cpu_seconds"], r["limits"]
    rows = [
        ("runs finished / requested", f"{r['runs_finished']} / {r['runs_requested']}"),
        ("runs failed (injected tenants)", f"{r['runs_failed']} ({args.failing})"),
        ("total wall, first request to last end", f"{r['total_wall_seconds']} s"),
        ("capped at --max-minutes", str(r["capped"])),
        ("tenant-syncs per hour", f"{r['tenant_syncs_per_hour']}"),
        ("projected total, all tenants", f"{r['projected_total_minutes']} min"),
        ("run wall p50 / p95", "{p50} / {p95} s".format(**r["run_wall_seconds"])),
        ("queue wait p50 / p95", "{p50} / {p95} s".format(**r["queue_wait_seconds"])),
        ("run CPU p50 / p95 (sampled)", "{p50} / {p95} s".format(**r["run_cpu_seconds"])),
        ("run workers' CPU per run (exact)", f"{c['run_workers_per_run']} s"),
        ("daemon / webserver / fake CPU",
         f"{c['daemon']} / {c['webserver']} / {c['fake_graph']} s"),
        ("celery workers' CPU", f"{c['celery_workers']} s"),
        ("Graph calls per tenant p50 / p95", "{p50} / {p95}".format(**g["calls_per_tenant"])),
        ("RU per tenant-sync p50 / p95",
         "{p50} / {p95}".format(**g["resource_units_per_tenant_sync"])),
        ("429s (tenants with any; max per tenant)",
         f"{g['throttled_429_total']} ({g['tenants_with_429']}; {g['max_429_per_tenant']})"),
        ("Postgres database", f"{r['postgres']['database_mb']} MB, "
         f"{r['postgres']['event_log_rows']} event rows"),
        ("tenants with overlapping runs", str(lim["tenants_with_overlapping_runs"])),
        ("healthy tenants failed / not done",
         f"{len(lim['healthy_tenants_failed'])} / {lim['healthy_tenants_not_done']}"),
        ("runs without tenant/partition tags", str(lim["runs_without_tenant_partition_tags"])),
        ("tenants shown by the UI (GraphQL)", lim["tenants_shown_by_the_ui"]),
        ("load average start → end", f"{r['load_average']['start']} → {r['load_average']['end']}"),
    ]  # fmt: skip
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tenants", type=int, default=1000)
    p.add_argument("--min-users", type=int, default=100)
    p.add_argument("--max-users", type=int, default=500)
    p.add_argument("--failing", type=int, default=3, help="tenants with a wrong client secret")
    p.add_argument("--latency", type=float, default=0.03, help="the fake's latency, seconds")
    p.add_argument("--executor", choices=["in_process", "celery"], default="in_process")
    p.add_argument("--workers", type=int, default=2, help="celery workers")
    p.add_argument("--broker", default=os.environ.get("SP_FLEET_REDIS", "redis://127.0.0.1:6379/8"))
    p.add_argument("--max-minutes", type=float, default=40.0, help="stop waiting after this")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1, help="2: then the next day's syncs")
    p.add_argument("--keep-database", action="store_true")
    p.add_argument("--label", help="the key in fleet.json (default: EXECUTOR_TENANTS)")
    p.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    p.add_argument("--self-test", action="store_true", help="check the script's helpers, exit")
    args = p.parse_args()
    if args.self_test:
        self_test()
        return
    stop_on_signals()
    result = run(args)
    if not args.no_save:
        saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        console.print(f"process floor (CPU s, fresh process): {result['process_floor']}")
        key = args.label or f"{args.executor}_{args.tenants}"
        saved[key] = result
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")
        console.print(f"wrote {RESULTS} [{key}]")


if __name__ == "__main__":
    main()
