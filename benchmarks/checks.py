"""Benchmark: the data-quality checks against the transform + diff they guard, at 100k users.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python benchmarks/checks.py [--users 100000]

A tenant is generated with `fakegraph.generate_tenant` and COPYed straight into staging
through `staging.StagingWriter` (no Graph calls: the extraction is not what is measured). Then,
one after the other on this machine: the transform (`rules.build_snapshot`, managers imported,
a deny list), the diff against an empty app (`diff.compute_diff`), great-expectations' import
and context, and every suite of `sync_pipeline.checks.expectations` (the code the asset checks run).
Everything happens in a scratch database `sp_bench_<random>` dropped afterwards (--keep-database
keeps it; --database NAME reuses a kept one and its staged tenant). Prints the figures and
writes benchmarks/results/checks.json. The suites run one after the other here; in a sync
they run three steps of concurrent checks, and their share of a whole sync (the issue's
figure) comes from benchmarks/sync.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from benchlib import RssSampler, drop_database, scratch_database, stage_document

from sync_pipeline.checks import expectations
from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.extract.staging import COLUMNS
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.load import diff
from sync_pipeline.registry import runs
from sync_pipeline.transform import rules

TENANT = "bench-checks"
ZERO = "00000000-0000-0000-0000-000000000000"
RESULTS = Path(__file__).with_name("results") / "checks.json"


def timed(fn, *args, **kw):
    started = time.perf_counter()
    value = fn(*args, **kw)
    return value, round(time.perf_counter() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-database", action="store_true", help="keep the scratch database")
    parser.add_argument("--database", help="reuse a kept sp_bench_* database and its tenant")
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL") or db.database_url()
    name, url = scratch_database(server, args.database)
    print(f"scratch database {name}")
    try:
        run(args, db.engine(url))
    finally:
        db.engine(url).dispose()
        if not (args.keep_database or args.database):
            drop_database(server, name)


def run(args: argparse.Namespace, engine: sa.Engine) -> None:
    db.upgrade(engine)
    if args.database:  # the rows a --keep-database run left in staging
        generated = loaded = 0.0
        with engine.connect() as conn:
            staged = dict(
                conn.execute(db.q("extract/staged_counts"), {"t": TENANT}).mappings().one()
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
        staged, loaded = timed(stage_document, engine, TENANT, doc)
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

    # as the sync does after each load (db.vacuum_if_needed): the checks then read tables
    # whose pages are all-visible, as in a sync
    db.vacuum_if_needed(engine, [f"staging.{t}" for t in COLUMNS])
    started = time.perf_counter()
    with engine.begin() as conn:
        snapshot = rules.build_snapshot(conn, settings)
    transform_s = round(time.perf_counter() - started, 2)
    db.vacuum_if_needed(engine, list(rules.SNAPSHOT_TABLES))
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
        "command": f"DATABASE_URL=... .venv/bin/python benchmarks/checks.py --users {args.users}",
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


if __name__ == "__main__":
    main()
