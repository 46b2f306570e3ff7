"""What the benchmarks share: a scratch database, a generated tenant staged straight into
staging.*, and memory sampling (this process and the Postgres backend).

Benchmarks run as scripts (`python benchmarks/NAME.py`), so this folder is on sys.path.
"""

from __future__ import annotations

import argparse
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import sqlalchemy as sa

from sync_pipeline import db, staging

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
        name = reuse
    else:
        name = f"sp_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(db.with_driver(server, "psycopg"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    url = sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    return name, url


def drop_database(server: str, name: str) -> None:
    admin = sa.create_engine(db.with_driver(server, "psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
        db.engine(url).dispose()
        if args.keep_database or args.database:
            print(f"kept {name}: reuse it with --database {name}")
        else:
            drop_database(server, name)
