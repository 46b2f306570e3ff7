"""Benchmark: a whole sync through Dagster, initial and after 1 % churn, with each stage's share.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        flock /tmp/bench.lock .venv/bin/python benchmarks/sync.py [--users 100000]

A tenant is generated (`fakegraph.generate_tenant`: ~4 groups per 100 users, ~14 memberships
per user) and served by the fake Graph in a process of its own, with 30 ms latency and
Graph's resource-unit limits for a tenant over 500 users (8,000 RU / 10 s). It is registered
in a scratch database `sp_bench_<random>` (which also holds the Dagster instance's storage,
as production keeps it beside the data), with managers imported. Then, each time in a process
of its own, exactly what an operator runs: `sync-pipeline sync TENANT` (the `sync` job,
in-process executor, progress polled from the event log); first the initial sync into an
empty app, then, `--daily` times (3 by default; their medians are the headline figures),
after 1 % churn through the fake's admin API (user updates, adds, deletes, manager changes,
membership adds and removals), a daily sync.

From each run's event log: every step's duration (STEP_START → STEP_SUCCESS / FAILURE; each
asset check is a step of its own), summed per stage (extract, transform, diff, checks, apply)
and `other` (the process wall time less the steps: interpreter start, imports, migrations,
Dagster's own bookkeeping between steps). The checks' share is checks / the whole process,
and what they add is checks / (the whole process - checks). GX's import and context cost is
measured apart, in a fresh process that first loads the definitions as a run does: a run
pays it once per process, in a background thread started when the run initialises its
resources (`expectations.warm_up`), so only what is left of it when the first check step
starts (a short extraction) shows in the checks.
Peak RSS is the sync process's own (its VmHWM, polled until it exits). Prints a table and writes
benchmarks/results/sync.json (100k-user figures; copy it aside before a small run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import sqlalchemy as sa
from benchlib import Fake, churn, in_scratch_database
from rich.console import Console
from rich.table import Table

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline_tests.support.database import save_tenant
from sync_pipeline_tests.support.fakegraph import FAKE_SECRET, settings_fields

RESULTS = Path(__file__).with_name("results") / "sync.json"
SECRET = FAKE_SECRET
SECRET_ENV = "SP_BENCH_SECRET"
SLUG = "bench-sync"
VENV_BIN = Path(sys.executable).parent
STAGES = ("extract", "transform", "diff", "checks", "apply")
# The steps of the `sync` job by stage (asset checks are recognised by their event's data).
STEP_STAGE = {
    "graph_directory": "extract",
    "directory_snapshot": "transform",
    "sync_diff": "diff",
    "app_directory": "apply",
}
console = Console(highlight=False)


# -- one sync, as an operator runs it --------------------------------------------------------------
def child_env(database_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env |= {
        "DATABASE_URL": database_url,
        "SYNC_PIPELINE_HOME": str(home),  # its Dagster home: the project's dagster.yaml
        SECRET_ENV: SECRET,
        "COLUMNS": "120",
    }
    return env


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:  # gone between poll() and open()
        pass
    return 0


def run_sync(env: dict[str, str], home: Path, label: str) -> dict[str, Any]:
    """`sync-pipeline sync SLUG` in a process of its own; wall time, peak RSS, exit code."""
    log = home / f"{label}.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "sync-pipeline"), "sync", SLUG], env=env, stdout=out, stderr=out
        )
        # The child's own peak: VmHWM, read until it exits (it only grows). Not wait4's
        # ru_maxrss: Linux carries the parent's high-water mark into the child across fork
        # and exec, and this process holds the 100k-user tenant it churned.
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            time.sleep(0.1)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        console.print(log.read_text(errors="replace")[-4000:])
        failed_checks(env, home)
        raise SystemExit(f"{label} sync exited with {proc.returncode} (log above, {log})")
    return {
        "process_wall_seconds": round(wall, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def failed_checks(env: dict[str, str], home: Path) -> None:
    """The failed checks' sample rows of the latest run (what the UI would show)."""
    import dagster as dg

    os.environ["SYNC_PIPELINE_DAGSTER_PG_URL"] = db.with_driver(env["DATABASE_URL"], "psycopg2")
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"tenant": SLUG}), limit=1)
        kind = dg.DagsterEventType.ASSET_CHECK_EVALUATION
        for rec in instance.all_logs(runs[0].run_id, of_type=kind) if runs else []:
            evaluation = rec.dagster_event.event_specific_data
            if not evaluation.passed:
                table = evaluation.metadata.get("failed_expectations")
                console.print(f"{evaluation.check_name}:\n{table.value if table else ''}")


def steps_of(instance: Any, run_id: str) -> tuple[list[dict[str, Any]], float, float]:
    """Every step of the run with its duration and stage, the run's own wall time, and the
    checks' bookkeeping outside their steps."""
    import dagster as dg

    T = dg.DagsterEventType
    records = instance.all_logs(run_id)
    begun: dict[str, float] = {}
    steps: dict[str, dict[str, Any]] = {}
    checks: set[str] = set()
    run_start = run_end = None
    for rec in records:
        event = rec.dagster_event
        if event is None:
            continue
        kind, step = event.event_type, rec.step_key
        if kind == T.RUN_START:
            run_start = rec.timestamp
        elif kind in (T.RUN_SUCCESS, T.RUN_FAILURE):
            run_end = rec.timestamp
        elif kind == T.ASSET_CHECK_EVALUATION and step:
            checks.add(step)
        elif kind == T.STEP_START:
            begun.setdefault(step, rec.timestamp)
        elif kind in (T.STEP_SUCCESS, T.STEP_FAILURE):
            steps[step] = {
                "step": step,
                "seconds": round(rec.timestamp - begun[step], 3),
                "status": "success" if kind == T.STEP_SUCCESS else "failure",
            }
    for step in steps.values():
        name = step["step"]
        step["stage"] = "checks" if name in checks else STEP_STAGE.get(name, "other")
    if run_start is None or run_end is None:
        raise SystemExit(f"run {run_id}: no RUN_START / RUN_SUCCESS in its event log")
    # Dagster's bookkeeping for the checks outside their steps: the "check planned" events
    # written before the run starts and the hook events after each check step (the time
    # since the previous event). Counted in `other`, reported beside the checks.
    bookkeeping = 0.0
    previous = None
    for rec in records:
        event = rec.dagster_event
        if event is not None and previous is not None:
            planned = event.event_type == T.ASSET_CHECK_EVALUATION_PLANNED
            hook = rec.step_key in checks and event.event_type in (
                T.HOOK_SKIPPED,
                T.HOOK_COMPLETED,
            )
            if planned or hook:
                bookkeeping += rec.timestamp - previous
        previous = rec.timestamp
    ordered = sorted(steps.values(), key=lambda s: begun[s["step"]])
    return ordered, run_end - run_start, bookkeeping


def check_metadata(instance: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """Each check's own figures (GX validation seconds, rows) from its evaluation event."""
    import dagster as dg

    out = {}
    for rec in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = rec.dagster_event.event_specific_data
        meta = {k: v.value for k, v in evaluation.metadata.items()}
        out[evaluation.check_name] = {
            "passed": evaluation.passed,
            "rows": meta.get("rows_checked"),
            "gx_seconds": meta.get("seconds"),
            "check_seconds": meta.get("check_seconds"),
        }
    return out


def maintenance(instance: Any, run_id: str) -> dict[str, Any]:
    """What the extraction and the transform vacuumed after their load, and how long it took
    (their materialisations' `vacuumed` and `vacuum_seconds`)."""
    import dagster as dg

    out = {}
    kind = dg.DagsterEventType.ASSET_MATERIALIZATION
    for rec in instance.all_logs(run_id, of_type=kind):
        materialization = rec.dagster_event.event_specific_data.materialization
        meta = {k: v.value for k, v in materialization.metadata.items()}
        if "vacuumed" in meta:
            out[rec.step_key] = {"vacuumed": meta["vacuumed"], "seconds": meta["vacuum_seconds"]}
    return out


PATH_KEYS = ("transform_path", "transform_full_reason", "transform_users_recomputed",
             "diff_path", "diff_full_reason", "diff_users_considered")  # fmt: skip


def paths(instance: Any, run_id: str) -> dict[str, Any]:
    """Which path the transform and the diff took (incremental or full, why, how much they
    looked at), from their materialisations' metadata."""
    import dagster as dg

    out: dict[str, Any] = {}
    kind = dg.DagsterEventType.ASSET_MATERIALIZATION
    for rec in instance.all_logs(run_id, of_type=kind):
        meta = rec.dagster_event.event_specific_data.materialization.metadata
        out |= {k: meta[k].value for k in PATH_KEYS if k in meta}
    return out


def gx_import_seconds(env: dict[str, str]) -> float:
    """GX's import + ephemeral context in a fresh process that has loaded the definitions
    (what a run process has done when its first check step starts)."""
    code = (
        "import time, sync_pipeline.definitions\n"
        "from sync_pipeline.checks import expectations\n"
        "t = time.perf_counter(); expectations._context()\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    return round(float(out.stdout.strip().splitlines()[-1]), 2)


def summarise(
    label: str, measured: dict[str, Any], steps: list[dict[str, Any]], run_wall: float
) -> dict[str, Any]:
    wall = measured["process_wall_seconds"]
    stages = {s: round(sum(x["seconds"] for x in steps if x["stage"] == s), 2) for s in STAGES}
    stages["other"] = round(wall - sum(stages.values()), 2)
    return {
        "run": label,
        **measured,
        "dagster_run_wall_seconds": round(run_wall, 2),
        "stages_seconds": stages,
        "checks_percent_of_sync": round(100 * stages["checks"] / wall, 1),
        # what the checks add to the sync without them
        "checks_added_percent": round(100 * stages["checks"] / (wall - stages["checks"]), 1),
        "checks_percent_of_dagster_run": round(100 * stages["checks"] / run_wall, 1),
        "steps": steps,
    }


# -- the benchmark ---------------------------------------------------------------------------------
def bench(args: argparse.Namespace, engine: sa.Engine, reused: bool) -> None:
    if reused:
        raise SystemExit("--database is not supported: the sync needs its fake Graph's state")
    import dagster as dg

    load_1m = round(os.getloadavg()[0], 2)
    database_url = engine.url.render_as_string(hide_password=False)
    db.upgrade(engine)
    started = time.perf_counter()
    fake = Fake(args.users, args.seed, domain="bench.example", latency=args.latency, throttle=True)
    info = fake.info
    console.print(
        f"fake Graph up in {time.perf_counter() - started:.1f} s: {info['users']} users, "
        f"{info['groups']} groups, {info['memberships']} memberships (load {load_1m})"
    )
    home = Path(tempfile.mkdtemp(prefix="sp-bench-sync-"))
    env = child_env(database_url, home)
    os.environ[SECRET_ENV] = SECRET
    fields = settings_fields(
        SLUG,
        tenant_id=info["tenant_id"],
        client_id=info["client_id"],
        base_url=info["base_url"],
        ca_path=info["ca_path"],
        secret_env=SECRET_ENV,
    )
    save_tenant(engine, TenantSettings(**fields, import_managers=True, auto_sync=False))
    runs: list[dict[str, Any]] = []
    churned: dict[str, int] = {}
    try:
        labels = [
            "initial",
            *(f"daily {i + 1}" for i in range(args.daily)),
            *(f"unchanged {i + 1}" for i in range(args.unchanged)),
        ]
        for n, label in enumerate(labels):
            if n and not label.startswith("unchanged"):
                # not the generator's seed: the same stream would draw its user ids again
                churned = churn(fake, args.churn, seed=args.seed + args.users + n)
                console.print(f"churn: {churned}")
            time.sleep(args.cooldown)  # a full resource-unit bucket for each sync
            loads = [round(x, 2) for x in os.getloadavg()]
            measured = run_sync(env, home, label)
            # the instance the sync recorded its run in (DAGSTER_HOME under SYNC_PIPELINE_HOME)
            os.environ["SYNC_PIPELINE_DAGSTER_PG_URL"] = db.with_driver(database_url, "psycopg2")
            with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
                run = instance.get_runs(filters=dg.RunsFilter(tags={"tenant": SLUG}), limit=1)[0]
                steps, run_wall, bookkeeping = steps_of(instance, run.run_id)
                row = summarise(label, measured, steps, run_wall)
                row["checks_bookkeeping_outside_steps_seconds"] = round(bookkeeping, 2)
                row["checks"] = check_metadata(instance, run.run_id)
                row["vacuum"] = maintenance(instance, run.run_id)
                row["paths"] = paths(instance, run.run_id)
            row["load_average_at_start"] = loads
            runs.append(row)
            s = row["stages_seconds"]
            vacuumed = "; ".join(
                f"{step}: {v['vacuumed']} ({v['seconds']} s)" for step, v in row["vacuum"].items()
            )
            console.print(
                f"{label}: {row['process_wall_seconds']} s, checks {s['checks']} s = "
                f"{row['checks_percent_of_sync']} %, peak RSS {row['peak_rss_mb']} MB; "
                f"vacuumed after the loads: {vacuumed or 'nothing'}"
            )
        gx_s = gx_import_seconds(env)
        peer = None
        if args.peer:
            from extract import run_pager  # the extraction benchmark's sequential pager

            console.print("the peer: a sequential requests pager reads the same tenant ...")
            time.sleep(args.cooldown)
            peer = run_pager(info)
            console.print(f"the pager read it in {peer['seconds']} s")
    finally:
        fake.stop()
    daily = [r for r in runs if r["run"].startswith("daily")]
    unchanged = [r for r in runs if r["run"].startswith("unchanged")]
    report = {
        "benchmark": "sync",
        "command": "DATABASE_URL=... flock /tmp/bench.lock .venv/bin/python benchmarks/sync.py"
        f" --users {args.users}",
        "tenant": {k: info[k] for k in ("users", "groups", "memberships")},
        "fake_graph": {"latency_s": args.latency, "throttle": "8,000 RU / 10 s", "seed": args.seed},
        "settings": "defaults + import_managers",
        "churn": churned,
        "runs": runs,
        "daily_median": {
            "syncs": len(daily),
            "process_wall_seconds": round(median(r["process_wall_seconds"] for r in daily), 2),
            "checks_seconds": round(median(r["stages_seconds"]["checks"] for r in daily), 2),
            "checks_added_percent": round(median(r["checks_added_percent"] for r in daily), 2),
        }
        if daily
        else None,
        "unchanged_median": {
            "syncs": len(unchanged),
            "process_wall_seconds": round(median(r["process_wall_seconds"] for r in unchanged), 2),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in unchanged),
        }
        if unchanged
        else None,
        "initial": {
            "process_wall_seconds": runs[0]["process_wall_seconds"],
            "pager_read_seconds": peer["seconds"] if peer else None,
            "faster_than_pager": round(peer["seconds"] / runs[0]["process_wall_seconds"], 2)
            if peer
            else None,
        },
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "targets": {
            "initial_s": 60,
            "initial_vs_pager": 3,
            "daily_1pct_s": 6,
            "unchanged_s": 3,
            "peak_rss_mb": 600,
        },
        "gx_import_and_context_seconds": gx_s,
        "gx_import_note": "paid once per run process (in-process executor: one process per "
        "run), in a background thread from the run's start; only what is left when the first "
        "check step starts counts in the checks",
        "target": "checks add at most 10% to the sync's wall time",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_before": load_1m,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "note": "2 cores shared with other developers' work: absolute seconds vary",
        },
    }
    shutil.rmtree(home, ignore_errors=True)  # kept when a sync failed: its log is there
    print_table(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


def print_table(report: dict[str, Any]) -> None:
    runs = report["runs"]
    table = Table(title=f"sync of {report['tenant']['users']:,} users, seconds (share of the sync)")
    table.add_column("")
    for run in runs:
        table.add_column(run["run"], justify="right")
    for stage in (*STAGES, "other"):
        cells = []
        for run in runs:
            value = run["stages_seconds"][stage]
            cells.append(f"{value:.1f} ({100 * value / run['process_wall_seconds']:.0f} %)")
        table.add_row(stage, *cells)
    table.add_row("whole sync (process)", *(f"{r['process_wall_seconds']:.1f}" for r in runs))
    table.add_row("Dagster run", *(f"{r['dagster_run_wall_seconds']:.1f}" for r in runs))
    table.add_row("checks share", *(f"{r['checks_percent_of_sync']} %" for r in runs))
    table.add_row("checks added", *(f"{r['checks_added_percent']} %" for r in runs))
    table.add_row(
        "+ check events outside steps",
        *(f"{r['checks_bookkeeping_outside_steps_seconds']:.2f} s" for r in runs),
    )
    table.add_row("peak RSS MB", *(f"{r['peak_rss_mb']}" for r in runs))
    table.add_row("load avg (1/5/15 min)", *(str(r["load_average_at_start"]) for r in runs))
    console.print(table)
    checks = Table(title="check steps, seconds (GX validation inside)")
    checks.add_column("step")
    for run in runs:
        checks.add_column(run["run"], justify="right")
    names = [s["step"] for s in runs[0]["steps"] if s["stage"] == "checks"]
    for name in names:
        cells = []
        for run in runs:
            step = next((s for s in run["steps"] if s["step"] == name), None)
            cells.append("-" if step is None else f"{step['seconds']:.2f}")
        checks.add_row(name, *cells)
    console.print(checks)
    for run in runs:
        p = run.get("paths", {})
        console.print(
            f"{run['run']}: transform {p.get('transform_path')} "
            f"({p.get('transform_full_reason') or p.get('transform_users_recomputed')}), diff "
            f"{p.get('diff_path')} ({p.get('diff_full_reason') or p.get('diff_users_considered')})"
        )
    if report["unchanged_median"]:
        u = report["unchanged_median"]
        console.print(f"unchanged syncs (median of {u['syncs']}): {u['process_wall_seconds']} s")
    initial = report["initial"]
    if initial["pager_read_seconds"]:
        console.print(
            f"initial sync {initial['process_wall_seconds']} s; the pager's read alone "
            f"{initial['pager_read_seconds']} s ({initial['faster_than_pager']}x)"
        )
    if report["daily_median"]:
        m = report["daily_median"]
        console.print(
            f"daily syncs (median of {m['syncs']}): {m['process_wall_seconds']} s, checks "
            f"{m['checks_seconds']} s, adding {m['checks_added_percent']} % to the sync"
        )
    last = runs[-1]
    console.print(
        f"checks of the {last['run']} sync (whole check / GX inside, s): "
        + ", ".join(
            f"{name} {c['check_seconds']}/{c['gx_seconds']}" for name, c in last["checks"].items()
        )
    )
    console.print(
        f"GX import + context: {report['gx_import_and_context_seconds']} s once per run process, "
        "in the background from the run's start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.03, help="fake Graph latency, s")
    parser.add_argument("--churn", type=float, default=0.01, help="share of users changed")
    parser.add_argument(
        "--daily", type=int, default=3, help="daily syncs after the initial one, each after churn"
    )
    parser.add_argument(
        "--unchanged", type=int, default=2, help="syncs with nothing changed, after the daily ones"
    )
    parser.add_argument(
        "--no-peer", dest="peer", action="store_false", help="skip the sequential pager's read"
    )
    parser.add_argument("--cooldown", type=float, default=11.0, help="bucket refill, s")
    parser.add_argument("--keep-database", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    args.database = None
    in_scratch_database(args, bench)


if __name__ == "__main__":
    main()
