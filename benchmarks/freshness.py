"""Benchmark: how soon a user disabled in Graph is inactive in app.* (issue 17's freshness).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        flock /tmp/bench.lock .venv/bin/python benchmarks/freshness.py [--tenants 20] \
        [--changes 100] [--spread-minutes 10] [--interval-tenants 2] [--interval-changes 20] \
        [--skip-interval]

The production topology of fleet.py (one fake Graph process serving N generated tenants of
one app, 100-300 users each; a scratch database `sp_bench_<random>`; a gRPC code server, a
webserver and the daemon from this checkout), plus the receiver of Graph change
notifications as an operator runs it: `sync-pipeline notifications serve` on loopback over
TLS (a CA of the benchmark's own, which the fake verifies it with). Every tenant is
registered with `change_notifications` on, `notification_url` the receiver, the deactivation
grace period off (`deactivation_grace_reads: 1`, `deactivation_grace_hours: 0`) and the
default `notification_debounce_seconds` (60; `--debounce`). Each tenant's first sync comes
from the daemon's schedule (fleet.py's technique), and the daemon's
`notification_subscriptions` sensor creates the subscriptions.

Phase "notifications": `--changes` users (active in app.users) spread over the tenants are
disabled in Graph (`accountEnabled: false`, through the fake's admin mutation API) one at a
time, evenly over `--spread-minutes` in a random order. The fake posts a notification to the
receiver for each; the daemon's `notification_syncs` sensor (every 15 s) requests a sync per
marked tenant after the debounce. app.users is polled every 0.5 s; a change's figure is the
time from the mutation's request to the first poll that sees the user inactive. For each
change the tenant's first run created after it splits that time into: the trigger (debounce
and sensor tick), the queue and launch, the run, and the poll's slack.

Phase "interval" (unless `--skip-interval`): notifications off and `sync_interval` at its
minimum (5 minutes) for the `--interval-tenants` largest tenants (the subscriptions' deletion
by the sensor is awaited first); `--interval-changes` users of theirs are disabled, evenly
over two intervals; the schedule's interval syncs catch them. Fewer changes than the first
phase, to keep its runtime near 15 minutes: the bound (an interval plus a sync) does not
depend on how many changes there are.

Prints a table and merges the figures into benchmarks/results/freshness.json under `--label`
(default `latest`), with the load average and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from benchlib import scratch_database
from fleet import (
    SECRET_ENV,
    FleetFake,
    Service,
    free_port,
    open_instance,
    percentile,
    run_facts,
    slot_and_start,
    start_daemon,
    start_topology,
    stop_on_signals,
    tear_down,
    wait_for,
)
from rich.console import Console
from rich.table import Table

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.notifications import state
from sync_pipeline.registry import tenants
from sync_pipeline_tests.support.database import save_tenant
from sync_pipeline_tests.support.fakegraph import FAKE_SECRET, settings_fields
from sync_pipeline_tests.support.loopback import receiver_tls
from sync_pipeline_tests.support.rows import NO_GRACE
from sync_pipeline_tests.support.topology import start_schedule_since

RESULTS = Path(__file__).with_name("results") / "freshness.json"
TARGET_P95_SECONDS = 120.0  # issue 17, with notifications on and no grace period
POLL_SECONDS = 0.5
console = Console(highlight=False)


# -- helpers (pure; `--self-test` runs them) -----------------------------------------------------


def spread(n: int, minutes: float, rng: random.Random) -> list[float]:
    """n offsets (seconds from the phase's start), evenly over `minutes`, each jittered within
    its slot, ascending."""
    step = minutes * 60 / n
    return [round(i * step + rng.uniform(0, step), 2) for i in range(n)]


def pick_changes(
    active: dict[str, list[str]], slugs: list[str], n: int, rng: random.Random
) -> list[tuple[str, str]]:
    """n (tenant, Graph user id) pairs, round-robin over `slugs` (so spread as evenly as n
    allows), each user at most once, in a random order."""
    pools = {s: rng.sample(active[s], len(active[s])) for s in slugs}
    out = []
    for i in range(n):
        slug = slugs[i % len(slugs)]
        if not pools[slug]:
            raise SystemExit(f"{slug}: no active user left to disable")
        out.append((slug, pools[slug].pop()))
    rng.shuffle(out)
    return out


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": round(max(values), 2) if values else None,
        "mean": round(statistics.fmean(values), 2) if values else None,
    }


def self_test() -> None:
    rng = random.Random(1)
    at = spread(10, 1, rng)
    assert len(at) == 10 and at == sorted(at) and 0 <= at[0] < 6 and 54 <= at[-1] < 60
    picked = pick_changes({"a": ["1", "2", "3"], "b": ["4", "5"]}, ["a", "b"], 4, rng)
    assert sorted(t for t, _ in picked) == ["a", "a", "b", "b"]
    assert len({u for _, u in picked}) == 4
    assert summary([1, 2, 3, 4]) == {"p50": 2.5, "p95": 3.85, "max": 4, "mean": 2.5}
    print("freshness.py self-test: ok")


# -- the receiver, the tenants --------------------------------------------------------------------


def start_receiver(
    env: dict[str, str], work: Path, tls: tuple[Path, Path, Path], services: list[Service]
) -> str:
    """`sync-pipeline notifications serve` over TLS on a loopback port; its URL once it answers."""
    ca, cert, key = tls
    port = free_port()
    args = [sys.executable, "-m", "sync_pipeline.cli", "notifications", "serve", "--port"]
    args += [str(port), "--tls-cert", str(cert), "--tls-key", str(key)]
    services.append(Service("receiver", args, env, work))
    http = requests.Session()
    http.trust_env, http.verify = False, str(ca)

    def up() -> bool:
        try:
            return http.get(f"https://127.0.0.1:{port}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    wait_for("the receiver", up, 60, services)
    return f"https://127.0.0.1:{port}/notifications"


def register(
    engine: sa.Engine, fake: FleetFake, receiver_url: str, debounce: int, slot: dt.datetime
) -> list[str]:
    slugs = []
    for i, (tenant_id, _) in enumerate(fake.info["tenants"]):
        slug = f"fresh-{i:03d}"
        fields = settings_fields(
            slug,
            tenant_id=tenant_id,
            client_id=fake.info["client_id"],
            base_url=fake.info["base_url"],
            ca_path=fake.info["ca_path"],
            secret_env=SECRET_ENV,
        )
        fields |= NO_GRACE | {
            "auto_sync": True,
            "timezone": "UTC",
            "sync_time": slot.time(),
            "change_notifications": True,
            "notification_url": receiver_url,
            "notification_debounce_seconds": debounce,
        }
        save_tenant(engine, TenantSettings(**fields))
        slugs.append(slug)
    return slugs


def active_users(engine: sa.Engine, slugs: list[str]) -> dict[str, list[str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT tenant, external_id FROM app.users WHERE tenant = ANY(:t) AND is_active "
                "AND source = 'm365' ORDER BY tenant, external_id"
            ),
            {"t": slugs},
        ).all()
    out: dict[str, list[str]] = {s: [] for s in slugs}
    for tenant, external_id in rows:
        out[tenant].append(external_id)
    return out


def inactive(engine: sa.Engine, slugs: list[str]) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT tenant, external_id FROM app.users "
                "WHERE tenant = ANY(:t) AND NOT is_active AND external_id IS NOT NULL"
            ),
            {"t": slugs},
        ).all()
    return {(t, e) for t, e in rows}


def settled(instance: Any, engine: sa.Engine, slugs: list[str]) -> bool:
    """No run of the tenants queued or going, and no mark waiting for one."""
    from sync_pipeline.registry import runlimits

    with engine.connect() as conn:
        marked = {m.tenant for m in state.dirty(conn)}
    return not marked & set(slugs) and not any(
        runlimits.run_in_progress(instance, s) for s in slugs
    )


def failures(instance: Any, records: list[Any]) -> dict[str, int]:
    """Why the failed runs failed: each run's first step or run failure message (shortened),
    counted, so that a failure is known after the scratch database is dropped."""
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
    out: dict[str, int] = {}
    for rec in records:
        events = instance.all_logs(rec.dagster_run.run_id, of_type=kinds)
        why = "no failure event"
        for ev in events[:1]:
            error = getattr(ev.dagster_event.event_specific_data, "error", None)
            why = (error.message if error is not None else ev.message).strip()[:200]
        out[why] = out.get(why, 0) + 1
    return out


def notification_counts(engine: sa.Engine, slugs: list[str]) -> dict[str, int]:
    """The receiver's accepted and rejected notifications of the tenants, summed."""
    out: dict[str, int] = {}
    with engine.connect() as conn:
        for slug in slugs:
            for kind, n in state.counts(conn, slug).items():
                out[kind] = out.get(kind, 0) + n
    return out


def subscribed(engine: sa.Engine, slugs: list[str]) -> int:
    with engine.connect() as conn:
        return sum(len(state.subscriptions(conn, s)) == 2 for s in slugs)


# -- a phase ------------------------------------------------------------------------------------


def measure(
    name: str,
    instance: Any,
    engine: sa.Engine,
    fake: FleetFake,
    services: list[Service],
    tenant_ids: dict[str, str],
    changes: list[tuple[str, str]],
    offsets: list[float],
    timeout_minutes: float,
) -> dict[str, Any]:
    """Disable each user at its offset, poll app.users until every one is inactive (or the
    timeout after the last change); the figures of the phase."""
    import dagster as dg

    slugs = sorted({t for t, _ in changes})
    before = inactive(engine, slugs)
    counted_before = notification_counts(engine, slugs)
    load_start = os.getloadavg()
    start = time.time()
    changed_at: dict[tuple[str, str], float] = {}
    seen_at: dict[tuple[str, str], float] = {}
    last_print = 0.0
    deadline = start + offsets[-1] + timeout_minutes * 60
    console.print(
        f"[bold]{name}[/]: {len(changes)} users of {len(slugs)} tenants disabled over "
        f"{offsets[-1] / 60:.1f} min"
    )
    queue = list(zip(offsets, changes, strict=True))
    while queue or len(seen_at) < len(changed_at):
        now = time.time()
        while queue and now - start >= queue[0][0]:
            _, (slug, user) = queue.pop(0)
            changed_at[(slug, user)] = time.time()
            op = {"op": "update_user", "id": user, "changes": {"accountEnabled": False}}
            fake.admin("POST", f"tenants/{tenant_ids[slug]}/mutate", {"ops": [op]})
        for key in inactive(engine, slugs) - before - set(seen_at):
            if key in changed_at:
                seen_at[key] = time.time()
        if now - last_print > 30:
            last_print = now
            for s in services:
                if not s.alive():
                    raise SystemExit(f"{s.name} exited:\n{s.tail()}")
            console.print(
                f"  {now - start:5.0f} s: {len(changed_at)} changed, {len(seen_at)} inactive, "
                f"load {os.getloadavg()[0]:.1f}"
            )
        if now > deadline:
            break
        time.sleep(POLL_SECONDS)
    end = time.time()
    stop_on_signals()  # Dagster's imports install handlers of their own

    created = dt.datetime.fromtimestamp(start, dt.UTC)
    records = instance.get_run_records(dg.RunsFilter(job_name="sync", created_after=created))
    runs = [
        {
            "tenant": r.dagster_run.tags.get("tenant"),
            "trigger": r.dagster_run.tags.get("trigger"),
            "kind": r.dagster_run.tags.get("sync_pipeline/sync_kind"),
            "status": r.dagster_run.status.value,
            "created": r.create_timestamp.timestamp(),
            "start": r.start_time,
            "end": r.end_time,
        }
        for r in records
    ]
    parts: dict[str, list[float]] = {"trigger": [], "queue": [], "run": [], "poll": []}
    for key, t in changed_at.items():
        after = [r for r in runs if r["tenant"] == key[0] and r["created"] >= t]
        first = min(after, key=lambda r: r["created"], default=None)
        if first is None or not first["start"] or not first["end"] or key not in seen_at:
            continue
        parts["trigger"].append(first["created"] - t)
        parts["queue"].append(first["start"] - first["created"])
        parts["run"].append(first["end"] - first["start"])
        parts["poll"].append(seen_at[key] - first["end"])
    latencies = [seen_at[k] - changed_at[k] for k in seen_at]
    by_trigger: dict[str, int] = {}
    for r in runs:
        label = f"{r['trigger']}" + (f" ({r['kind']})" if r["kind"] else "")
        by_trigger[label] = by_trigger.get(label, 0) + 1
    walls = [r["end"] - r["start"] for r in runs if r["start"] and r["end"]]
    counted = {
        k: n - counted_before.get(k, 0) for k, n in notification_counts(engine, slugs).items()
    }
    return {
        "phase": name,
        "tenants": len(slugs),
        "changes": len(changes),
        "spread_seconds": round(offsets[-1], 1),
        "inactive_in_app": len(seen_at),
        "not_seen_by_timeout": len(changed_at) - len(seen_at),
        "latency_seconds": summary(latencies),
        "latency_parts_p50_seconds": {k: percentile(v, 50) for k, v in parts.items()},
        "latency_parts_p95_seconds": {k: percentile(v, 95) for k, v in parts.items()},
        "runs_started": len(runs),
        "runs_by_trigger": by_trigger,
        "runs_failed": sum(r["status"] != "SUCCESS" for r in runs),
        "failures": failures(
            instance, [r for r in records if r.dagster_run.status.value == "FAILURE"]
        ),
        "run_wall_seconds": {"p50": percentile(walls, 50), "p95": percentile(walls, 95)},
        "notifications_accepted_total": counted.get(state.ACCEPTED, 0),
        "notifications_rejected_total": counted.get(state.REJECTED, 0),
        "wall_seconds": round(end - start, 1),
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
    }


# -- the benchmark ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    server = os.environ.get("DATABASE_URL") or db.database_url()
    load_start = os.getloadavg()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="sp-fresh-"))
    tls = receiver_tls(work)
    console.print(f"generating and serving {args.tenants} tenants on one fake Graph ...")
    fake = FleetFake(
        args.tenants,
        args.seed,
        args.min_users,
        args.max_users,
        args.latency,
        notification_ca=str(tls[0]),
    )
    name, url = scratch_database(server)
    console.print(f"scratch database {name}")
    services: list[Service] = []
    engine = db.engine(url)
    try:
        env, _ = start_topology(work, url, services, {SECRET_ENV: FAKE_SECRET})
        receiver_url = start_receiver(env, work, tls, services)
        instance = open_instance(env)
        slot, since = slot_and_start(dt.datetime.now(dt.UTC))
        slugs = register(engine, fake, receiver_url, args.debounce, slot)
        tenant_ids = {s: tid for s, (tid, _) in zip(slugs, fake.info["tenants"], strict=True)}
        size = {s: n for s, (_, n) in zip(slugs, fake.info["tenants"], strict=True)}
        instance.add_dynamic_partitions("tenant", slugs)
        start_schedule_since(instance, since)
        console.print(f"{len(slugs)} tenants due at {slot:%H:%M} UTC; starting the daemon")
        t0 = time.monotonic()
        start_daemon(services, env, work)

        def ready() -> bool:
            synced = active_users(engine, slugs)
            return (
                all(synced.values())
                and subscribed(engine, slugs) == len(slugs)
                and settled(instance, engine, slugs)
            )

        wait_for("the first syncs and the subscriptions", ready, 30 * 60, services)
        console.print(f"first syncs done and subscribed in {time.monotonic() - t0:.0f} s")

        def phase(label: str, among: list[str], n: int, minutes: float) -> dict[str, Any]:
            changes = pick_changes(active_users(engine, among), among, n, rng)
            offsets = spread(len(changes), minutes, rng)
            return measure(
                label, instance, engine, fake, services, tenant_ids, changes, offsets,
                args.timeout_minutes,
            )  # fmt: skip

        phases = []
        if not args.skip_notifications:
            phases.append(phase("notifications", slugs, args.changes, args.spread_minutes))
        if not args.skip_interval:
            chosen = sorted(slugs, key=lambda s: -size[s])[: args.interval_tenants]
            with engine.begin() as conn:
                for slug in chosen:
                    current = tenants.get(conn, slug).settings
                    update = {"change_notifications": False, "sync_interval": args.interval}
                    tenants.save(conn, current.model_copy(update=update))
            wait_for(
                "the interval tenants' subscriptions deleted and their runs ended",
                lambda: subscribed(engine, chosen) == 0 and settled(instance, engine, chosen),
                10 * 60,
                services,
            )
            phases.append(phase("interval", chosen, args.interval_changes, 2 * args.interval))
            phases[-1]["sync_interval_minutes"] = args.interval
        instance.dispose()
        return {
            "tenants": len(slugs),
            "users_per_tenant": [args.min_users, args.max_users],
            "users_total": sum(size.values()),
            "notification_debounce_seconds": args.debounce,
            "deactivation_grace": NO_GRACE,
            "sensor_intervals_seconds": {
                "notification_syncs": 15,
                "notification_subscriptions": 60,
            },
            "latency_seconds_fake_graph": args.latency,
            "target_p95_seconds": TARGET_P95_SECONDS,
            "phases": phases,
        } | run_facts("freshness.py", load_start)
    finally:
        tear_down(services, fake, engine, (server, name, work), keep=args.keep_database)


def show(result: dict[str, Any]) -> None:
    t = Table(title=f"freshness: {result['tenants']} tenants, disabled in Graph → inactive in app")
    t.add_column("measure")
    for p in result["phases"]:
        t.add_column(p["phase"], justify="right")

    def row(label: str, get: Any) -> None:
        t.add_row(label, *(str(get(p)) for p in result["phases"]))

    lat = "latency_seconds"
    row("changes / tenants", lambda p: f"{p['changes']} / {p['tenants']}")
    row("spread over", lambda p: f"{p['spread_seconds'] / 60:.1f} min")
    row(
        "inactive in app.* / not by the timeout",
        lambda p: f"{p['inactive_in_app']} / {p['not_seen_by_timeout']}",
    )
    row("p50 / p95 / max", lambda p: "{p50} / {p95} / {max} s".format(**p[lat]))
    row(
        "target p95",
        lambda p: (
            f"{TARGET_P95_SECONDS:.0f} s"
            if p["phase"] == "notifications"
            else f"{p.get('sync_interval_minutes', '?')} min (sync_interval)"
        ),
    )
    for part in ("trigger", "queue", "run", "poll"):
        row(
            f"  {part}, p50 / p95",
            lambda p, k=part: (
                f"{p['latency_parts_p50_seconds'][k]} / {p['latency_parts_p95_seconds'][k]} s"
            ),
        )
    row("runs started (failed)", lambda p: f"{p['runs_started']} ({p['runs_failed']})")
    row(
        "runs by trigger", lambda p: ", ".join(f"{k}: {v}" for k, v in p["runs_by_trigger"].items())
    )
    row("run wall p50 / p95", lambda p: "{p50} / {p95} s".format(**p["run_wall_seconds"]))
    row(
        "notifications accepted / rejected",
        lambda p: f"{p['notifications_accepted_total']} / {p['notifications_rejected_total']}",
    )
    row(
        "load average start → end",
        lambda p: f"{p['load_average']['start'][0]} → {p['load_average']['end'][0]}",
    )
    console.print(t)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tenants", type=int, default=20)
    p.add_argument("--min-users", type=int, default=100)
    p.add_argument("--max-users", type=int, default=300)
    p.add_argument("--changes", type=int, default=100, help="users disabled, notifications on")
    p.add_argument("--spread-minutes", type=float, default=10.0, help="... over this long")
    p.add_argument("--debounce", type=int, default=60, help="notification_debounce_seconds")
    p.add_argument("--interval", type=int, default=5, help="sync_interval, minutes (phase 2)")
    p.add_argument("--interval-tenants", type=int, default=2)
    p.add_argument("--interval-changes", type=int, default=20)
    p.add_argument("--skip-interval", action="store_true", help="only the notifications phase")
    p.add_argument("--skip-notifications", action="store_true", help="only the interval phase")
    p.add_argument("--timeout-minutes", type=float, default=12.0, help="wait after the last change")
    p.add_argument("--latency", type=float, default=0.03, help="the fake's latency, seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep-database", action="store_true")
    p.add_argument("--label", default="latest", help="the key in freshness.json")
    p.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    p.add_argument("--self-test", action="store_true", help="check the script's helpers, exit")
    args = p.parse_args()
    if args.self_test:
        self_test()
        return
    stop_on_signals()
    result = run(args)
    show(result)
    if not args.no_save:
        saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        saved[args.label] = result
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")
        console.print(f"wrote {RESULTS} [{args.label}]")


if __name__ == "__main__":
    main()
