"""Benchmark: what the outbox's events add to a first load's apply (issue 18).

    flock /tmp/bench.lock python benchmarks/apply.py --keep-database      # prints the name
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        flock /tmp/bench.lock python benchmarks/events.py --database sp_bench_xxxxxx

In a database kept by benchmarks/apply.py (100k users, 1.2 M memberships, its first load's
1.39 M audit rows in sync.changes), times `outbox.events.emit` for that first load's run, the
statement the apply runs in its transaction, `--repeat` times, each in a transaction of its
own that deletes the run's events first and is rolled back. Prints the events per type and
the seconds; writes benchmarks/results/events.json. `--smallest`: the run with the fewest
audit rows instead (apply.py's 1 % change), printed only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import sqlalchemy as sa
from benchlib import scratch_database

from sync_pipeline.core import db
from sync_pipeline.outbox import events

TENANT = "bench-apply"
RESULTS = Path(__file__).parent / "results" / "events.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="a sp_bench_* kept by apply.py")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--smallest", action="store_true", help="the run with the fewest audit rows (1 %% change)"
    )
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL") or db.database_url()
    _, url = scratch_database(server, args.database)
    engine = db.engine(url)
    db.upgrade(engine)
    with engine.connect() as conn:
        run_id, changes = conn.execute(
            sa.text(
                "SELECT run_id, count(*) FROM sync.changes WHERE tenant = :t"
                " GROUP BY run_id ORDER BY count(*) * :sign DESC LIMIT 1"
            ),
            {"t": TENANT, "sign": -1 if args.smallest else 1},
        ).one()
    runs = []
    for _ in range(args.repeat):
        load = os.getloadavg()[0]
        with engine.connect() as conn, conn.begin() as tx:
            conn.execute(
                sa.text("DELETE FROM sync.events WHERE tenant = :t AND run_id = :r"),
                {"t": TENANT, "r": run_id},
            )
            started = time.perf_counter()
            counts = events.emit(conn, TENANT, int(run_id))
            seconds = round(time.perf_counter() - started, 2)
            tx.rollback()
        runs.append({"seconds": seconds, "load_average_1min_before": round(load, 2)})
        print(f"emit: {seconds} s (load {load:.2f}) {counts}")
    result = {
        "run_audit_rows": int(changes),
        "events": counts,
        "runs": runs,
        "median_seconds": sorted(r["seconds"] for r in runs)[len(runs) // 2],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    if not args.smallest:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
