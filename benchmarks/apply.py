"""Benchmark: the diff and apply (with its audit) of a 100k-user tenant, beside a raw COPY.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        nice -n 5 .venv/bin/python benchmarks/apply.py [--users 100000] [--percent 1]
        [--keep-database | --database sp_bench_xxxxxx]

Everything happens in a scratch database `sp_bench_<random>` created on DATABASE_URL's server
and dropped afterwards (never in the database DATABASE_URL names, which others share);
--keep-database keeps it, --database reuses a kept one (its staged tenant and first snapshot
are reused, app.* and the audit are emptied), to measure again without the minutes of
generating, staging and transforming.

Steps: generate a tenant (`fakegraph.generate_tenant`, ~14 memberships per user), COPY it into
staging (`staging.StagingWriter`), build the snapshot (`rules.build_snapshot`, not timed here:
benchmarks/transform.py measures it), then time on a fresh connection:

- `initial`: `diff.compute_diff` + `diff.apply_diff` (which writes sync.changes) into an empty
  app.*, committed;
- `no_change`: the same again (the usual nightly sync of an unchanged directory);
- `one_percent`: after changing ~`--percent`% of the staged users (renamed, disabled, deleted,
  moved between groups) and rebuilding the snapshot, diff + apply again;
- `raw_copy`: the rows the initial apply wrote to app.users and app.group_members, COPYed by
  psycopg into two scratch tables of the same shape (no indexes) in the same database.

A thread samples this process's RSS; the Postgres side is the backend's peak RSS
(/proc/<pid>/status VmHWM, when the server runs on this machine). Prints a table and writes
benchmarks/results/apply.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchlib import (
    RssSampler,
    add_database_options,
    analyze,
    backend_peak_mb,
    in_scratch_database,
    stage_document,
)

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.extract import staging
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.load import diff
from sync_pipeline.transform import rules

TENANT = "bench-apply"
ZERO = "00000000-0000-0000-0000-000000000000"
RESULTS = Path(__file__).with_name("results") / "apply.json"
TARGETS = {"initial_vs_raw_copy": 3.0, "one_percent_seconds": 5.0}


def measure(engine: sa.Engine, name: str, work: Callable[[sa.Connection], dict]) -> dict:
    """Run work(conn) in one committed transaction on a fresh backend; time and memory."""
    gc.collect()
    engine.dispose()  # a fresh backend, so its peak RSS is this step's
    sampler = RssSampler()
    load_before = round(os.getloadavg()[0], 2)
    sampler.start()
    started = time.perf_counter()
    with engine.begin() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        figures = work(conn)
        pg_peak = backend_peak_mb(pid)
    seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    return {
        "step": name,
        "seconds": round(seconds, 2),
        **figures,
        "python_rss_peak_mb": round(sampler.peak / 2**20, 1),
        "postgres_backend_peak_rss_mb": pg_peak,
        "load_average_1min_before": load_before,
    }


def new_run(conn: sa.Connection) -> int:
    return conn.execute(
        sa.text("INSERT INTO sync.runs (tenant, status) VALUES (:t, 'success') RETURNING id"),
        {"t": TENANT},
    ).scalar_one()


class StatementTimer:
    """Times each statement diff.py runs (the same split rules.run_script makes)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def __call__(self, conn: sa.Connection, name: str, params: dict[str, object]) -> list[int]:
        counts = []
        for statement in db.statements(name):
            started = time.perf_counter()
            counts.append(conn.execute(sa.text(statement), params).rowcount)
            code = [ln for ln in statement.splitlines() if not ln.lstrip().startswith("--")]
            self.rows.append(
                {
                    "script": name + (f" ({params['action']})" if params.get("action") else ""),
                    "statement": " ".join(" ".join(code).split())[:60],
                    "seconds": round(time.perf_counter() - started, 2),
                    "rows": counts[-1],
                }
            )
        return counts


def diff_and_apply(settings: TenantSettings) -> Callable[[sa.Connection], dict]:
    def work(conn: sa.Connection) -> dict:
        timer = StatementTimer()
        diff.run_script = timer  # per-statement figures; the statements run unchanged
        with db.tenant_lock(conn, TENANT):
            run_id = new_run(conn)
            started = time.perf_counter()
            planned = diff.compute_diff(conn, TENANT, run_id, settings)
            diffed = time.perf_counter()
            applied = diff.apply_diff(conn, TENANT, run_id)
            done = time.perf_counter()
            recorded = conn.execute(
                sa.text("SELECT count(*) FROM sync.changes WHERE tenant = :t AND run_id = :r"),
                {"t": TENANT, "r": run_id},
            ).scalar_one()
        return {
            "diff_seconds": round(diffed - started, 2),
            "apply_and_audit_seconds": round(done - diffed, 2),
            "changes": sum(applied.values()),
            "changes_recorded": recorded,
            "applied": {k: v for k, v in applied.items() if v},
            "planned_user_deactivate": planned["user_deactivate"],
            "slowest_statements": sorted(timer.rows, key=lambda r: -r["seconds"])[:8],
        }

    return work


def raw_copy(engine: sa.Engine) -> list[dict]:
    """COPY the app rows the initial apply wrote into scratch tables, timed twice: `raw_copy`
    into bare tables (no index, no constraint), `app_shaped_copy` into tables shaped like
    app.* (the same indexes, and foreign keys to the app rows), the floor any load pays."""
    with engine.begin() as conn:
        users = conn.execute(
            sa.text(
                "SELECT tenant, external_id, email, display_name, first_name, last_name,"
                " job_title, department, is_active, source FROM app.users WHERE tenant = :t"
            ),
            {"t": TENANT},
        ).all()
        members = conn.execute(
            sa.text(
                "SELECT tenant, group_id, user_id, source FROM app.group_members WHERE tenant = :t"
            ),
            {"t": TENANT},
        ).all()
    cols = "tenant, external_id, email, display_name, first_name, last_name, job_title,"
    cols += " department, is_active, source"
    shapes = {
        "raw_copy": (
            "CREATE TABLE public.copy_users (tenant text, external_id text, email text,"
            " display_name text, first_name text, last_name text, job_title text,"
            " department text, is_active boolean, source text);"
            " CREATE TABLE public.copy_members (tenant text, group_id bigint, user_id bigint,"
            " source text)"
        ),
        "app_shaped_copy": (
            "CREATE TABLE public.copy_users (LIKE app.users INCLUDING ALL);"
            " CREATE UNIQUE INDEX ON public.copy_users (tenant, lower(email)) WHERE is_active;"
            " CREATE UNIQUE INDEX ON public.copy_users (tenant, external_id)"
            " WHERE external_id IS NOT NULL;"
            " CREATE TABLE public.copy_members (LIKE app.group_members INCLUDING ALL,"
            " FOREIGN KEY (group_id) REFERENCES app.groups (id),"
            " FOREIGN KEY (user_id) REFERENCES app.users (id));"
            " CREATE INDEX ON public.copy_members (tenant, user_id)"
        ),
    }
    out = []
    for name, ddl in shapes.items():
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS public.copy_users, public.copy_members"))
            for statement in ddl.split(";"):
                conn.execute(sa.text(statement))

        def work(conn: sa.Connection) -> dict:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                for table, columns, rows in (
                    ("copy_users", cols, users),
                    ("copy_members", "tenant, group_id, user_id, source", members),
                ):
                    with cur.copy(f"COPY public.{table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(tuple(row))
            return {"rows": len(users) + len(members), "users": len(users), "members": len(members)}

        out.append(measure(engine, name, work))
    with engine.begin() as conn:  # the app-shaped copy's foreign keys point at app.*
        conn.execute(sa.text("DROP TABLE IF EXISTS public.copy_users, public.copy_members"))
    return out


def mutate(engine: sa.Engine, percent: float, seed: int) -> dict[str, int]:
    """Change ~percent% of the staged users: rename, disable, delete; move memberships."""
    rng = random.Random(seed)
    with engine.begin() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT id FROM staging.users WHERE tenant = :t ORDER BY id"), {"t": TENANT}
            )
        ]
        groups = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT id FROM staging.groups WHERE tenant = :t ORDER BY id"),
                {"t": TENANT},
            )
        ]
        chosen = rng.sample(ids, int(len(ids) * percent / 100))
        # deactivations kept under the default safety limit of 500
        n = len(chosen)
        renamed, disabled, deleted, moved = (
            chosen[: n * 4 // 10],
            chosen[n * 4 // 10 : n * 6 // 10],
            chosen[n * 6 // 10 : n * 8 // 10],
            chosen[n * 8 // 10 :],
        )
        p = {"t": TENANT}
        conn.execute(
            sa.text(
                "UPDATE staging.users SET display_name = display_name || ' (renamed)',"
                " job_title = 'Moved' WHERE tenant = :t AND id = ANY(:ids)"
            ),
            p | {"ids": renamed},
        )
        conn.execute(
            sa.text(
                "UPDATE staging.users SET account_enabled = false WHERE tenant = :t"
                " AND id = ANY(:ids)"
            ),
            p | {"ids": disabled},
        )
        for table, col in (
            ("group_members", "member_id"),
            ("user_managers", "user_id"),
            ("user_licences", "user_id"),
            ("users", "id"),
        ):
            conn.execute(
                sa.text(f"DELETE FROM staging.{table} WHERE tenant = :t AND {col} = ANY(:ids)"),
                p | {"ids": deleted},
            )
        # each moved user leaves one of its groups and joins another
        conn.execute(
            sa.text(
                "DELETE FROM staging.group_members gm USING ("
                " SELECT DISTINCT ON (member_id) group_id, member_id FROM staging.group_members"
                " WHERE tenant = :t AND member_id = ANY(:ids) ORDER BY member_id, group_id) x"
                " WHERE gm.tenant = :t AND gm.group_id = x.group_id AND gm.member_id = x.member_id"
            ),
            p | {"ids": moved},
        )
        conn.execute(
            sa.text(
                "INSERT INTO staging.group_members (tenant, group_id, member_id, member_type)"
                " SELECT :t, g, m, 'user' FROM unnest(CAST(:gs AS text[]), CAST(:ms AS text[]))"
                " AS x(g, m) ON CONFLICT DO NOTHING"
            ),
            p | {"gs": [rng.choice(groups) for _ in moved], "ms": moved},
        )
    return {
        "renamed": len(renamed),
        "disabled": len(disabled),
        "deleted": len(deleted),
        "moved": len(moved),
    }


def reset_app(engine: sa.Engine) -> None:
    """Empty the scratch database's app.* and audit (a reused database starts over); only
    the benchmark's tenant lives in it, so TRUNCATE is safe (a DELETE would check the
    manager foreign key row by row)."""
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS public.copy_users, public.copy_members"))
        conn.execute(
            sa.text("TRUNCATE app.group_members, app.users, app.groups, sync.changes, sync.diffs")
        )
    analyze(engine, "app.users", "app.groups", "app.group_members", "sync.changes", "sync.diffs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--percent", type=float, default=1.0, help="users changed for the diff")
    parser.add_argument("--seed", type=int, default=1)
    add_database_options(parser)
    args = parser.parse_args()
    in_scratch_database(args, run)


def run(args: argparse.Namespace, engine: sa.Engine, reused: bool) -> None:
    db.upgrade(engine)
    settings = TenantSettings(
        slug=TENANT,
        tenant_id=ZERO,
        client_id=ZERO,
        client_secret_env="X",
        import_managers=True,
        max_deactivations=100_000,
    )
    prep: dict[str, Any] = {}
    if reused:
        with engine.connect() as conn:
            prep = conn.execute(sa.text("SELECT doc FROM public.bench_params")).scalar_one()
        with engine.begin() as conn:  # back to the staged tenant as generated
            for table in staging.COLUMNS:
                conn.execute(
                    sa.text(f"DELETE FROM staging.{table} WHERE tenant = :t"), {"t": TENANT}
                )
                conn.execute(
                    sa.text(f"INSERT INTO staging.{table} SELECT * FROM public.orig_{table}")
                )
        reset_app(engine)
    else:
        started = time.perf_counter()
        doc = generate_tenant(
            name="bench", users=args.users, seed=args.seed, domain="bench.example"
        )
        prep["generate_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        prep["staged"] = stage_document(engine, TENANT, doc)
        prep["stage_seconds"] = round(time.perf_counter() - started, 1)
        del doc
        gc.collect()
        with engine.begin() as conn:  # kept for --database: the staged tenant as generated
            for table in staging.COLUMNS:
                conn.execute(
                    sa.text(
                        f"CREATE TABLE public.orig_{table} AS SELECT * FROM staging.{table}"
                        " WHERE tenant = :t"
                    ),
                    {"t": TENANT},
                )
    print(f"staged: {prep['staged']}")
    started = time.perf_counter()
    with engine.begin() as conn:
        snap = rules.build_snapshot(conn, settings)
    prep["snapshot_seconds"] = round(time.perf_counter() - started, 1)
    prep["snapshot"] = {k: snap[k] for k in ("users_included", "groups_included", "memberships")}
    print(f"snapshot in {prep['snapshot_seconds']} s: {prep['snapshot']}")
    if not reused:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE public.bench_params (doc jsonb NOT NULL)"))
            conn.execute(
                sa.text("INSERT INTO public.bench_params VALUES (CAST(:d AS jsonb))"),
                {"d": json.dumps(prep)},
            )
    analyze(engine, "sync.snapshot_users", "sync.snapshot_groups", "sync.snapshot_memberships")

    steps = [measure(engine, "initial", diff_and_apply(settings))]
    analyze(engine, "app.users", "app.groups", "app.group_members", "sync.changes", "sync.diffs")
    steps.extend(raw_copy(engine))
    steps.append(measure(engine, "no_change", diff_and_apply(settings)))
    mutated = mutate(engine, args.percent, args.seed)
    started = time.perf_counter()
    with engine.begin() as conn:
        rules.build_snapshot(conn, settings)
    resnap = round(time.perf_counter() - started, 1)
    print(f"changed {mutated}; snapshot rebuilt in {resnap} s")
    steps.append(measure(engine, "one_percent", diff_and_apply(settings)))
    steps[-1]["mutated"] = mutated

    by = {s["step"]: s for s in steps}
    ratio = round(by["initial"]["seconds"] / by["raw_copy"]["seconds"], 2)
    shaped = round(by["initial"]["seconds"] / by["app_shaped_copy"]["seconds"], 2)
    verdict = {
        "initial_vs_raw_copy": ratio,
        "initial_within_target": ratio <= TARGETS["initial_vs_raw_copy"],
        # the same rows COPYed into tables with app.*'s indexes and foreign keys: what any
        # loader pays to write them into this app, before planning or auditing anything
        "initial_vs_app_shaped_copy": shaped,
        "initial_within_target_vs_app_shaped_copy": shaped <= TARGETS["initial_vs_raw_copy"],
        "one_percent_within_target": by["one_percent"]["seconds"] < TARGETS["one_percent_seconds"],
    }
    print(
        f"\n{'step':<12} {'seconds':>8} {'diff':>7} {'apply':>7} {'changes':>9} "
        f"{'py MB':>7} {'pg MB':>7} {'load':>5}"
    )
    for s in steps:
        print(
            f"{s['step']:<12} {s['seconds']:>8} {s.get('diff_seconds', ''):>7} "
            f"{s.get('apply_and_audit_seconds', ''):>7} "
            f"{s.get('changes', s.get('rows', '')):>9} {s['python_rss_peak_mb']:>7} "
            f"{s['postgres_backend_peak_rss_mb'] or '-':>7} {s['load_average_1min_before']:>5}"
        )
    print(
        f"initial / raw COPY = {ratio}x (target <= 3x); initial / app-shaped COPY = "
        f"{shaped}x; 1% diff "
        f"{by['one_percent']['seconds']} s (target < 5 s)"
    )
    with engine.connect() as conn:
        pg = dict(
            conn.execute(
                sa.text(
                    "SELECT name, setting || coalesce(unit, '') FROM pg_settings"
                    " WHERE name IN ('shared_buffers', 'work_mem', 'server_version',"
                    " 'synchronous_commit', 'max_wal_size')"
                )
            ).all()
        )
    report = {
        "benchmark": "apply",
        "command": "DATABASE_URL=... nice -n 5 .venv/bin/python benchmarks/apply.py "
        f"--users {args.users} --percent {args.percent}",
        "tenant": prep | {"snapshot_rebuild_after_change_seconds": resnap},
        "steps": steps,
        "targets": TARGETS,
        "verdict": verdict,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgres": pg,
            "notes": "seconds are wall time of one committed transaction on a fresh backend; "
            "initial/no_change/one_percent = diff.compute_diff + diff.apply_diff (including the "
            "sync.changes audit); raw_copy = psycopg COPY of the same app rows into index-free "
            "tables; python_rss_peak_mb is this process, postgres_backend_peak_rss_mb the "
            "backend's VmHWM (counts shared buffers touched); the 2 cores are shared, see "
            "load_average_1min_before",
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
