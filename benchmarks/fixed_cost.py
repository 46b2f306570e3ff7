"""The fixed cost of a run: `sync-pipeline sync contoso-demo` on an unchanged directory, from
process start to exit, broken down by where the time goes.

    flock /tmp/bench.lock python benchmarks/fixed_cost.py [--runs 5] [--embedded]

A scratch database `sp_bench_<random>` on DATABASE_URL's server (or, with --embedded or no
DATABASE_URL, the embedded server in a temporary SYNC_PIPELINE_HOME) gets the demo tenant and
one initial sync; then each measured sync runs the real CLI in a fresh process:

- `plain`: `python -m sync_pipeline.cli sync contoso-demo`, wall time from spawn to exit (the
  figure the target is about), and `sync-pipeline --help` the same way;
- `traced`: the same command through this file's `--child` mode, which wraps (in that
  process only) the functions a sync goes through, times every import (`_find_and_load`),
  and counts Postgres connections and statements per thread and driver (SQLAlchemy's pool
  `connect` and engine `before_cursor_execute` events; Dagster's storage is the psycopg2
  driver, the project's own code psycopg 3);
- one `python -X importtime` run of the plain command: which packages the imports cost.

Prints a table (rich) and writes benchmarks/results/fixed_cost.json, with os.getloadavg().
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "fixed_cost.json"
TENANT = "contoso-demo"
CPU: list[float] = []  # user + system seconds of each process _timed ran


# -- the traced child ---------------------------------------------------------------------------


class Trace:
    """Spans (name, thread, start, end, import seconds inside), imports, connections,
    statements; written as JSON when the process is about to end."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.t0 = time.time()
        self.spans: list[dict[str, Any]] = []
        self.imports: dict[str, float] = defaultdict(float)  # thread -> outermost import time
        self.import_top: dict[str, float] = defaultdict(float)  # top package -> seconds
        self.counts: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}
        self.local = threading.local()
        self.lock = threading.Lock()

    def now(self) -> float:
        return time.time()

    def imported(self) -> float:
        return self.imports[threading.current_thread().name]

    def add(self, key: str, seconds: float = 0.0, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n
            self.seconds[key] += seconds

    def wrap(self, owner: Any, attr: str, name: str | None = None) -> None:
        """Replace owner.attr by a timed wrapper recording a span named `name`."""
        original = getattr(owner, attr)
        label = name or attr
        trace = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            start, imp = time.time(), trace.imported()
            try:
                return original(*args, **kwargs)
            finally:
                end = time.time()
                trace.spans.append(
                    {
                        "name": label,
                        "thread": threading.current_thread().name,
                        "start": start - trace.t0,
                        "end": end - trace.t0,
                        "imports": trace.imported() - imp,
                    }
                )

        setattr(owner, attr, timed)

    def write(self) -> None:
        self.marks["atexit"] = time.time()
        doc = {
            "t0": self.t0,
            "spans": self.spans,
            "imports": dict(self.imports),
            "import_top": dict(self.import_top),
            "counts": dict(self.counts),
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "marks": self.marks,
        }
        Path(self.out).write_text(json.dumps(doc))


def _trace_imports(trace: Trace) -> None:
    """Time each outermost import per thread (the same hook -X importtime measures)."""
    import importlib._bootstrap as bootstrap

    original = bootstrap._find_and_load

    def find_and_load(name: str, import_: Any) -> Any:
        depth = getattr(trace.local, "depth", 0)
        trace.local.depth = depth + 1
        start = time.time()
        try:
            return original(name, import_)
        finally:
            trace.local.depth = depth
            if depth == 0:
                took = time.time() - start
                trace.imports[threading.current_thread().name] += took
                trace.import_top[name.split(".")[0]] += took

    bootstrap._find_and_load = find_and_load  # type: ignore[assignment]


def _count_database(trace: Trace) -> None:
    import sqlalchemy as sa

    def connected(dbapi_connection: Any, record: Any) -> None:
        driver = type(dbapi_connection).__module__.split(".")[0]
        trace.add(f"connect {driver} @{threading.current_thread().name.split('_')[0]}")

    def executing(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        trace.add(
            f"statement {conn.dialect.driver} @{threading.current_thread().name.split('_')[0]}"
        )

    sa.event.listen(sa.pool.Pool, "connect", connected)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", executing)


def _instrument(trace: Trace) -> None:
    """Wrap what a sync goes through; the modules are imported lazily where the CLI imports
    them, so each wrapper installs itself when its module first loads."""
    from sync_pipeline.cli import actions, syncrun
    from sync_pipeline.core import db, environment
    from sync_pipeline.graph import preflight
    from sync_pipeline.registry import demo, tenants

    trace.wrap(actions, "prepare", "prepare (database, migrations, demo)")
    trace.wrap(environment, "prepare", "environment.prepare")
    trace.wrap(db, "database_url", "database_url")
    trace.wrap(db, "upgrade", "migrations check (db.upgrade)")
    trace.wrap(tenants, "ensure_demo", "ensure_demo")
    trace.wrap(tenants, "get", "tenants.get (settings read)")
    trace.wrap(tenants, "validate_against_app", "tenants.validate_against_app")
    trace.wrap(demo, "serving", "demo.serving (fake Graph start)")
    trace.wrap(preflight, "check", "preflight.check")
    trace.wrap(actions, "partitions_add", "partitions_add (instance, partitions)")
    trace.wrap(syncrun, "cli_instance", "cli_instance (instance, storage setup)")
    trace.wrap(syncrun.SyncRun, "__init__", "SyncRun.__init__ (defs, instance, reap, busy)")
    trace.wrap(syncrun.SyncRun, "_execute", "execute_in_process (run thread)")
    trace.wrap(syncrun.SyncRun, "_follow", "progress loop (main thread)")
    trace.wrap(syncrun, "print_summary", "final summary")
    # Later imports: patched when the CLI first needs them (after SyncRun imports defs).
    original_init = syncrun.SyncRun.__init__

    def init_then_wrap(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)

    trace.wrap(sys.modules[__name__], "_instrument_run", "import the definitions (dagster, defs)")

    def first_init(self: Any, *args: Any, **kwargs: Any) -> None:
        sys.modules[__name__]._instrument_run(trace)
        syncrun.SyncRun.__init__ = init_then_wrap  # type: ignore[method-assign]
        original_init(self, *args, **kwargs)

    syncrun.SyncRun.__init__ = first_init  # type: ignore[method-assign]


def _instrument_run(trace: Trace) -> None:
    import dagster_postgres.event_log.event_log as pg_events
    import dagster_postgres.run_storage.run_storage as pg_runs
    import msal

    from sync_pipeline.checks import gxrun
    from sync_pipeline.definitions import defs  # noqa: F401  (imported here, timed as imports)
    from sync_pipeline.defs import checks, liveness, resources

    trace.wrap(liveness, "reap", "liveness.reap")
    trace.wrap(gxrun, "new_context", "GX context (import + creation)")
    trace.wrap(gxrun, "new_validation", "GX suites built")
    trace.wrap(gxrun, "validate", "GX validate")
    trace.wrap(checks, "_run", "check step body")
    trace.wrap(resources.Database, "tenant_settings", "Database.tenant_settings")
    trace.wrap(msal.ConfidentialClientApplication, "acquire_token_for_client", "token acquisition")
    for cls, names in (
        (pg_events.PostgresEventLogStorage, ("store_event", "get_records_for_run")),
        (
            pg_runs.PostgresRunStorage,
            ("add_run", "handle_run_event", "get_runs", "get_run_records"),
        ),
    ):
        for attr in names:
            _count_calls(trace, cls, attr)


def _count_calls(trace: Trace, owner: Any, attr: str) -> None:
    original = getattr(owner, attr)

    def counted(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            thread = threading.current_thread().name.split("_")[0]
            trace.add(f"{attr} @{thread}", time.time() - start)

    setattr(owner, attr, counted)


def child(out: str, argv: list[str]) -> None:
    trace = Trace(out)
    atexit.register(trace.write)  # registered first: runs after every other atexit hook
    _trace_imports(trace)
    start = time.time()
    import sqlalchemy  # noqa: F401  (the event hooks need it; the CLI imports it anyway)

    import sync_pipeline.cli as cli

    trace.marks["cli imported"] = time.time()
    trace.spans.append(
        {
            "name": "import sync_pipeline.cli",
            "thread": "MainThread",
            "start": start - trace.t0,
            "end": time.time() - trace.t0,
            "imports": time.time() - start,
        }
    )
    _count_database(trace)
    _instrument(trace)
    leave = os._exit

    def exit_now(code: int) -> None:  # the CLI leaving without teardown: write first
        trace.marks["main returned"] = time.time()
        trace.write()
        leave(code)

    os._exit = exit_now  # type: ignore[assignment]
    sys.argv = ["sync-pipeline", *argv]
    try:
        if hasattr(cli, "run"):
            cli.run()
        else:  # a checkout from before the entry point existed (--root)
            cli.main(prog_name="sync-pipeline")
    finally:
        trace.marks["main returned"] = time.time()


# -- the parent ---------------------------------------------------------------------------------


def _env(url: str | None, home: Path, root: Path) -> dict[str, str]:
    env = dict(os.environ, SYNC_PIPELINE_HOME=str(home), PYTHONPATH=str(root))
    env.pop("DAGSTER_HOME", None)
    env.pop("SYNC_PIPELINE_DAGSTER_PG_URL", None)
    if url is None:
        env.pop("DATABASE_URL", None)
    else:
        env["DATABASE_URL"] = url
    return env


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(spawn time, wall seconds, stderr) of one process; its CPU seconds in CPU[-1]."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawn = time.time()
    # In the measured checkout: `python -m` puts the working directory first on sys.path.
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=env["PYTHONPATH"])
    wall = time.time() - spawn
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return spawn, wall, proc.stderr


def _importtime(env: dict[str, str]) -> dict[str, float]:
    """Cumulative import seconds of each top-level package a plain sync imports."""
    cmd = [sys.executable, "-X", "importtime", "-m", "sync_pipeline.cli", "sync", TENANT]
    _, _, err = _timed(cmd, env)
    top: dict[str, float] = defaultdict(float)
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if name.startswith("  "):  # nested (indented): counted in its outermost import
            continue
        top[name.strip().split(".")[0]] += int(cumulative) / 1e6
    return dict(sorted(top.items(), key=lambda kv: -kv[1]))


FLOOR = {
    "python -c pass": "pass",
    "import dagster": "import dagster",
    "import dagster, pandas": "import dagster, pandas, sqlalchemy.orm",
    "import sync_pipeline.definitions": "import sync_pipeline.definitions",
    "import dagster, pandas, then great_expectations as gxrun does": (
        "import dagster, pandas, sqlalchemy.orm\n"
        "from sync_pipeline.checks import gxrun\n"
        "getattr(gxrun, 'defer_unused_imports', lambda: None)()\n"
        "import great_expectations"
    ),
}


def _floor(env: dict[str, str]) -> dict[str, dict[str, float]]:
    """What a process pays before any work: wall and CPU (user + system) seconds of processes
    that only import, the median of three."""
    out: dict[str, dict[str, float]] = {}
    for label, code in FLOOR.items():
        walls, cpus = [], []
        for _ in range(3):
            _, wall, _ = _timed([sys.executable, "-c", code], env)
            walls.append(wall)
            cpus.append(CPU[-1])
        out[label] = {
            "wall": round(statistics.median(walls), 3),
            "cpu": round(statistics.median(cpus), 3),
        }
    return out


def _breakdown(doc: dict[str, Any], spawn: float, wall: float) -> dict[str, Any]:
    t0, marks = doc["t0"], doc["marks"]
    spans = {}
    for s in sorted(doc["spans"], key=lambda s: s["start"]):
        thread = s["thread"].split("_")[0]  # check_0..n, graph-read_0..n: one row each
        key = f"{s['name']} @{thread}"
        agg = spans.setdefault(key, {"seconds": 0.0, "imports": 0.0, "calls": 0})
        agg["seconds"] += s["end"] - s["start"]
        agg["imports"] += s["imports"]
        agg["calls"] += 1
    return {
        "wall": wall,
        "interpreter start (spawn to first line)": t0 - spawn,
        "main returned to atexit (thread joins, atexit hooks)": marks["atexit"]
        - marks["main returned"],
        "atexit to process end (interpreter teardown)": spawn + wall - marks["atexit"],
        "imports by thread": doc["imports"],
        "imports by package": dict(sorted(doc["import_top"].items(), key=lambda kv: -kv[1])[:12]),
        "spans": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in spans.items()},
        "counts": doc["counts"],
        "seconds": doc["seconds"],
    }


def _load(avg: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in avg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured syncs of each kind")
    parser.add_argument("--embedded", action="store_true", help="the embedded server")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout whose CLI runs (default: this one)"
    )
    parser.add_argument("--label", default="", help="a name for this measurement in the JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        child(args.child, rest)
        return

    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(ROOT / "benchmarks"))
    home = Path(tempfile.mkdtemp(prefix="sp-bench-fixed-"))
    server = os.environ.get("DATABASE_URL")
    name = url = None
    if server and not args.embedded:
        from benchlib import scratch_database

        name, url = scratch_database(server)
        print(f"scratch database {name}")
    env = _env(url, home, args.root.resolve())
    cli = [sys.executable, "-m", "sync_pipeline.cli"]
    try:
        if url is not None:
            _timed([*cli, "demo", "--allow-database-url"], env)
        _timed([*cli, "sync", TENANT], env)  # the initial sync: not measured
        _timed([*cli, "sync", TENANT], env)  # caches warm (bytecode, the server's)
        load_before = os.getloadavg()
        helps = [_timed([*cli, "--help"], env)[1] for _ in range(args.runs)]
        plain = [_timed([*cli, "sync", TENANT], env)[1] for _ in range(args.runs)]
        plain_cpu = CPU[-args.runs :]
        traced = []
        for i in range(args.runs):
            out = home / f"trace-{i}.json"
            cmd = [sys.executable, __file__, "--child", str(out), "sync", TENANT]
            spawn, wall, _ = _timed(cmd, env)
            traced.append(_breakdown(json.loads(out.read_text()), spawn, wall))
            traced[-1]["cpu"] = round(CPU[-1], 3)
        imports = _importtime(env)
        floor = _floor(env)
        load_after = os.getloadavg()
    finally:
        if name is not None and server is not None:
            from benchlib import drop_database

            drop_database(server, name)
    # The traced run whose wall is the median stands for all.
    median_run = sorted(traced, key=lambda t: t["wall"])[len(traced) // 2]
    result = {
        "label": args.label,
        "checkout": str(args.root.resolve()),
        "command": f"sync-pipeline sync {TENANT} (unchanged directory)",
        "database": "embedded" if url is None else "DATABASE_URL scratch database",
        "runs": args.runs,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "help_seconds": sorted(round(h, 3) for h in helps),
        "help_median": round(statistics.median(helps), 3),
        "sync_seconds": sorted(round(p, 3) for p in plain),
        "sync_median": round(statistics.median(plain), 3),
        "sync_cpu_seconds": sorted(round(c, 3) for c in plain_cpu),
        "sync_cpu_median": round(statistics.median(plain_cpu), 3),
        "traced_seconds": sorted(round(t["wall"], 3) for t in traced),
        "traced_cpu_seconds": sorted(t["cpu"] for t in traced),
        "importtime_cumulative_by_package": {k: round(v, 3) for k, v in imports.items()},
        "floor_processes": floor,
        "traced_median_run": median_run,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    kept = kept if "measurements" in kept else {"measurements": {}}
    kept["measurements"][args.label or "latest"] = result
    RESULT.write_text(json.dumps(kept, indent=2) + "\n")

    console = Console()
    console.print(
        f"[bold]{result['command']}[/]: median {result['sync_median']} s wall, "
        f"{result['sync_cpu_median']} s CPU, of {len(plain)} runs {result['sync_seconds']}; "
        f"--help median {result['help_median']} s; load {_load(load_before)} → {_load(load_after)}"
    )
    table = Table(title=f"traced run ({median_run['wall']:.2f} s wall), where the time goes")
    table.add_column("part")
    table.add_column("thread")
    table.add_column("calls", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("of which imports", justify="right")
    table.add_row(
        "interpreter start",
        "",
        "",
        f"{median_run['interpreter start (spawn to first line)']:.3f}",
        "",
    )
    for key, v in median_run["spans"].items():
        label, _, thread = key.rpartition(" @")
        table.add_row(label, thread, str(v["calls"]), f"{v['seconds']:.3f}", f"{v['imports']:.3f}")
    table.add_row(
        "after main: thread joins, atexit",
        "",
        "",
        f"{median_run['main returned to atexit (thread joins, atexit hooks)']:.3f}",
        "",
    )
    table.add_row(
        "interpreter teardown",
        "",
        "",
        f"{median_run['atexit to process end (interpreter teardown)']:.3f}",
        "",
    )
    console.print(table)
    counts = Table(title="Postgres connections, statements and storage calls (traced run)")
    counts.add_column("what [thread]")
    counts.add_column("n", justify="right")
    counts.add_column("seconds", justify="right")
    for key in sorted(median_run["counts"]):
        s = median_run["seconds"].get(key)
        counts.add_row(key, str(median_run["counts"][key]), f"{s:.3f}" if s else "")
    console.print(counts)
    low = Table(title="the floor: processes that only import (median of 3)")
    low.add_column("process")
    low.add_column("wall s", justify="right")
    low.add_column("CPU s", justify="right")
    for k, v in floor.items():
        low.add_row(k, f"{v['wall']:.3f}", f"{v['cpu']:.3f}")
    console.print(low)
    imp = Table(title="imports (-X importtime, cumulative, outermost by package)")
    imp.add_column("package")
    imp.add_column("seconds", justify="right")
    for k, v in list(imports.items())[:12]:
        imp.add_row(k, f"{v:.3f}")
    console.print(imp)
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
