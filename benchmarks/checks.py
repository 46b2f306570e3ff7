"""Benchmark: the data-quality checks against the transform + diff they guard, at 100k users.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python benchmarks/checks.py [--users 100000]

A tenant is generated with `fakegraph.generate_tenant` and COPYed straight into staging
through `staging.StagingWriter` (no Graph calls: the extraction is not what is measured). Then,
one after the other on this machine: the transform (`rules.build_snapshot`, managers imported,
a deny list), the diff against an empty app (`diff.compute_diff`), great-expectations' import
and context, and every suite of `sync_pipeline.expectations` (the code the asset checks run).
Prints the figures and writes benchmarks/results/checks.json; the tenant's rows are deleted
afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import threading
import time
import uuid
from pathlib import Path

import psutil
import sqlalchemy as sa

from sync_pipeline import db, diff, expectations, rules, runs, staging
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.settings import TenantSettings

TENANT = "bench-checks"
ZERO = "00000000-0000-0000-0000-000000000000"
RESULTS = Path(__file__).with_name("results") / "checks.json"


def load(engine: sa.Engine, doc: dict) -> dict[str, int]:
    users = {u["id"] for u in doc["users"]}
    groups = {g["id"] for g in doc["groups"]}
    kinds = {o["id"]: staging.member_type(o) for o in doc["other_objects"]}
    with engine.begin() as conn:
        w = staging.StagingWriter(conn, TENANT)
        for table in staging.COLUMNS:
            w.clear(table)
        w.copy("users", (staging.user_row(TENANT, u) for u in doc["users"]))
        w.copy("user_licences", (r for u in doc["users"] for r in staging.licence_rows(TENANT, u)))
        w.copy("groups", (staging.group_row(TENANT, g) for g in doc["groups"]))
        w.copy(
            "group_members",
            (
                (TENANT, g, m, "user" if m in users else "group" if m in groups else kinds[m])
                for g, ms in doc["members"].items()
                for m in dict.fromkeys(ms)
            ),
        )
        w.copy("user_managers", ((TENANT, u, m) for u, m in doc["managers"].items()))
        for entity in ("users", "groups", "group_members"):
            w.record(entity, w.counts[entity], 0)
    with engine.begin() as conn:
        for table in ("users", "groups", "group_members", "user_managers", "user_licences"):
            conn.execute(sa.text(f"ANALYZE staging.{table}"))
    return dict(w.counts)


class RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.start_rss = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)


def timed(fn, *args, **kw):
    started = time.perf_counter()
    value = fn(*args, **kw)
    return value, round(time.perf_counter() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the tenant's rows")
    parser.add_argument(
        "--reuse", action="store_true", help="use the staging rows a --keep run left"
    )
    args = parser.parse_args()

    engine = db.engine()
    db.upgrade(engine)
    if args.reuse:  # the rows a --keep run left in staging
        generated = loaded = 0.0
        with engine.connect() as conn:
            staged = dict(
                conn.execute(db.q("staging/staged_counts"), {"t": TENANT}).mappings().one()
            )
            upns = conn.execute(
                sa.text(
                    "SELECT user_principal_name FROM staging.users WHERE tenant = :t"
                    " ORDER BY id LIMIT 2000"
                ),
                {"t": TENANT},
            ).scalars()
            deny = [u for i, u in enumerate(upns) if i % 7 == 0]
    else:
        doc, generated = timed(
            generate_tenant, name="bench", users=args.users, seed=args.seed, domain="bench.example"
        )
        staged, loaded = timed(load, engine, doc)
        deny = [doc["users"][i]["userPrincipalName"] for i in range(0, min(2000, args.users), 7)]
        del doc
    gc.collect()
    print(
        f"generated in {generated} s, staged in {loaded} s: "
        + ", ".join(f"{k} {v}" for k, v in staged.items())
    )
    settings = TenantSettings(
        slug=TENANT,
        tenant_id=ZERO,
        client_id=ZERO,
        client_secret_env="X",
        import_managers=True,
        email_deny_list=[*deny, "*@contractors.bench.example"],
    )

    started = time.perf_counter()
    with engine.begin() as conn:
        snapshot = rules.build_snapshot(conn, settings)
    transform_s = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    with engine.begin() as conn:
        run_id = runs.ensure(conn, TENANT, f"bench-{uuid.uuid4()}", dry_run=True)
        planned = diff.compute_diff(conn, TENANT, run_id, settings)
    diff_s = round(time.perf_counter() - started, 2)
    print(f"transform {transform_s} s ({snapshot['users_included']} users imported, "
          f"{snapshot['memberships']} memberships), diff {diff_s} s "
          f"({planned['user_create']} creates)")  # fmt: skip

    sampler = RssSampler()
    sampler.start()
    _, gx_import_s = timed(expectations._context)
    suites = {
        "staging_users": lambda c: expectations.check_staging_users(c, TENANT),
        "staging_groups": lambda c: expectations.check_staging_groups(c, TENANT),
        "staging_members": lambda c: expectations.check_staging_members(c, TENANT),
        "snapshot_users": lambda c: expectations.check_snapshot_users(c, settings),
        "snapshot_groups": lambda c: expectations.check_snapshot_groups(c, TENANT),
        "snapshot_memberships": lambda c: expectations.check_snapshot_memberships(c, TENANT),
        "drift": lambda c: expectations.check_drift(c, settings),
        "diff_safety": lambda c: expectations.check_diff_safety(c, settings, run_id, guard=True),
        "diff_fields": lambda c: expectations.check_diff_fields(c, TENANT, run_id),
    }
    checks = {}
    with engine.connect() as conn:
        for name, run in suites.items():
            outcome, seconds = timed(run, conn)
            checks[name] = {
                "seconds": seconds,
                "gx_seconds": outcome.seconds,
                "rows": outcome.rows,
                "passed": outcome.passed,
                "failed": [f.expectation for f in outcome.failures],
            }
            failed = "" if outcome.passed else f" FAILED {checks[name]['failed']}"
            print(
                f"{name:>22}: {seconds:5.2f} s ({outcome.rows} rows, "
                f"GX {outcome.seconds} s){failed}"
            )
    sampler.stop.set()
    sampler.join()
    checks_s = round(sum(c["seconds"] for c in checks.values()), 2)
    base = transform_s + diff_s
    report = {
        "benchmark": "checks",
        "command": "DATABASE_URL=... .venv/bin/python benchmarks/checks.py "
        f"--users {args.users}{' --reuse' if args.reuse else ''}",
        "tenant": {**staged, "generate_seconds": generated, "load_seconds": loaded},
        "transform_seconds": transform_s,
        "diff_seconds": diff_s,
        "users_imported": snapshot["users_included"],
        "memberships": snapshot["memberships"],
        "checks": checks,
        "checks_seconds": checks_s,
        "gx_import_and_context_seconds": gx_import_s,
        "checks_percent_of_transform_and_diff": round(100 * checks_s / base, 1),
        "checks_with_gx_import_percent_of_transform_and_diff": round(
            100 * (checks_s + gx_import_s) / base, 1
        ),
        "python_rss_growth_during_checks_mb": round((sampler.peak - sampler.start_rss) / 2**20, 1),
        "target": "checks add at most 10% to the sync's wall time",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "note": "2 cores shared with other developers' work: absolute seconds vary",
        },
    }
    print(
        f"checks {checks_s} s = {report['checks_percent_of_transform_and_diff']}% of transform "
        f"+ diff ({base:.2f} s); GX import + context {gx_import_s} s once per run process "
        f"({report['checks_with_gx_import_percent_of_transform_and_diff']}% with it)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    if not args.keep:
        with engine.begin() as conn:
            params = {"t": TENANT}
            conn.execute(sa.text("DELETE FROM sync.diffs WHERE tenant = :t"), params)
            conn.execute(sa.text("DELETE FROM sync.runs WHERE tenant = :t"), params)
            for table in (*(f"staging.{t}" for t in staging.COLUMNS), "staging.extractions"):
                conn.execute(sa.text(f"DELETE FROM {table} WHERE tenant = :t"), params)
            for table in ("snapshot_users", "snapshot_groups", "snapshot_memberships"):
                conn.execute(sa.text(f"DELETE FROM sync.{table} WHERE tenant = :t"), params)


if __name__ == "__main__":
    main()
