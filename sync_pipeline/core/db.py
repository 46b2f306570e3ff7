"""Database access: SQL loaded by name, planner statistics and VACUUM after loads, locks.

Also the one door to the database for the rest of the package: which server and its engine
(server.py) and the migrations (migrations.py) are re-exported here, so callers use
`db.engine()`, `db.upgrade()` and so on. No Dagster imports here.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from importlib.resources.abc import Traversable

import sqlalchemy as sa

from sync_pipeline.core.migrations import MIGRATIONS_DIR, MigrationError, migration_files, upgrade
from sync_pipeline.core.server import (
    APP_NAME,
    OLD_DEFAULT_HOME,
    DatabaseError,
    DatabaseURLError,
    check_url,
    database_url,
    embedded_running,
    engine,
    home,
    redact,
    stop_embedded,
    using_embedded,
    with_driver,
)

# The test suite starts its own embedded server with it.
from sync_pipeline.core.server import _import_pgserver as _import_pgserver

__all__ = [
    "APP_NAME",
    "MIGRATIONS_DIR",
    "OLD_DEFAULT_HOME",
    "SQL_DIR",
    "VACUUM_MAX_PAGES",
    "DatabaseError",
    "DatabaseURLError",
    "MigrationError",
    "analyze_after_writes",
    "analyze_if_stale",
    "check_url",
    "database_url",
    "embedded_running",
    "engine",
    "home",
    "load_sql",
    "migration_files",
    "q",
    "redact",
    "stop_embedded",
    "tenant_lock",
    "upgrade",
    "using_embedded",
    "vacuum_after_load",
    "vacuum_if_needed",
    "with_driver",
]

log = logging.getLogger(__name__)

# The statements ship inside the package (the wheel carries the repository's sql/ folder as
# sync_pipeline/sql, see pyproject.toml), so they are found as package resources wherever the
# package is installed, never by walking up from this file.
SQL_DIR: Traversable = resources.files("sync_pipeline") / "sql"


@functools.cache
def load_sql(name: str) -> str:
    """A statement from sql/<name>.sql; statements there use bound :parameters only."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL statement {name!r} at {path}")
    return path.read_text()


def q(name: str) -> sa.TextClause:
    return sa.text(load_sql(name))


_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


def statements(name: str) -> list[str]:
    """The statements of a multi-statement sql/<name>.sql, each ending with `;` at a line's
    end (comments-only pieces dropped). psycopg binds no parameters into a multi-statement
    string, so such a file is run statement by statement."""
    return [
        piece
        for piece in _STATEMENT_END.split(load_sql(name))
        if any(ln.strip() and not ln.strip().startswith("--") for ln in piece.splitlines())
    ]


def analyze_if_stale(
    conn: sa.Connection,
    tables: list[str],
    tenant: str | None = None,
    *,
    sizes: dict[str, int] | None = None,
) -> list[str]:
    """ANALYZE those of `tables` the planner has no or stale statistics for (see
    sql/core/stale_stats.sql); returns them. Inside the caller's transaction, so its own new rows
    count. Autovacuum gets there too, but a minute or more later: a tenant's first load would
    otherwise be checked and diffed with plans made for empty tables (a scan of a million
    memberships estimated at a few thousand rows: no parallel plan, nested loops).

    With `tenant`, also those whose statistics do not know the tenant's size: in a table
    shared by many tenants, a new tenant's first load is far from a fifth of the table, and
    the planner, taking it for a row or two, joins its thousands of rows by nested loops
    (a check ran for minutes that way). The estimate is read from the plan, and the rows
    counted only up to ten times it plus 100: a bounded index scan, no full count. The floor
    is low on purpose: a fleet's small tenants (a few hundred users) are new to statistics that
    already hold other tenants, and a check joining a few hundred rows estimated at one by
    nested loops took 15-30 s of a backend's CPU (benchmarks/fleet.py, docs/performance.md).
    `sizes` gives the tenant's rows per table where the caller knows them already (the
    transform's counts): those are not counted again (a scan of 1.2 M memberships per run)."""
    stale = list(conn.execute(q("core/stale_stats"), {"tables": tables}).scalars())
    if tenant is not None:
        for name in (t for t in tables if t not in stale):
            # names are this project's constants, never data
            plan = conn.execute(
                sa.text(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {name} WHERE tenant = :t"),
                {"t": tenant},
            ).scalar_one()
            estimate = int(plan[0]["Plan"]["Plan Rows"])
            bound = 10 * estimate + 100
            if sizes is not None and name in sizes:
                if sizes[name] > bound:
                    stale.append(name)
                continue
            have = conn.execute(
                sa.text(
                    f"SELECT count(*) FROM (SELECT 1 FROM {name} WHERE tenant = :t LIMIT :n) x"
                ),
                {"t": tenant, "n": bound + 1},
            ).scalar_one()
            if have > bound:
                stale.append(name)
    for name in stale:  # names come from pg_class or our own constant list
        conn.execute(sa.text(f"ANALYZE {name}"))
    return stale


def analyze_after_writes(conn: sa.Connection, written: dict[str, int], tenant: str) -> list[str]:
    """ANALYZE those tables this transaction wrote `written[table]` rows into that are many for
    the statistics the planner has: more than a fifth of the table (pg_class.reltuples) or
    more than the planner thinks the tenant holds there (a tenant's first apply into a table
    shared by many). Only catalog reads and an EXPLAIN, no count: the app's tables are not
    counted every run. Without this, where autovacuum is off or behind, the diff after a
    tenant's first apply planned 1.2 M app memberships as 4,000 and scanned them all."""
    done = []
    for name, rows in written.items():  # names are this project's constants, never data
        if rows <= 0:
            continue
        tuples = conn.execute(
            sa.text("SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = to_regclass(:n)"),
            {"n": name},
        ).scalar()
        plan = conn.execute(
            sa.text(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {name} WHERE tenant = :t"),
            {"t": tenant},
        ).scalar_one()
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        if rows > 0.2 * max(tuples or 0, 1000) or rows > estimate + 100:
            conn.execute(sa.text(f"ANALYZE {name}"))
            done.append(name)
    return done


# Above this size (1 GB) a staging or snapshot table holds many tenants' rows, and a VACUUM
# would hold up one tenant's sync for the others' changes: autovacuum's (migration 010).
VACUUM_MAX_PAGES = 131_072


def vacuum_if_needed(eng: sa.Engine, tables: list[str]) -> list[str]:
    """VACUUM those of `tables` that need it right after a load (sql/core/vacuum_needed.sql);
    returns those vacuumed. Call it once the load committed: VACUUM cannot run in a transaction.

    - After a bulk load (a tenant's first sync) no page is all-visible, and the checks and
      the diff read the table within seconds, before autovacuum comes by.
    - Where autovacuum is off (as on this project's development and CI server), also once
      the rows changed since the last VACUUM exceed a quarter of the table's pages. A daily
      sync's few thousand scattered changes clear the all-visible bit of ~15 % of a 100k
      tenant's membership pages; measured over six daily syncs without a VACUUM, the
      membership checks went from 0.5 to 1.3 s and the transform from 6.6 to 8.6 s. With it
      these tables are vacuumed every second day or so (0.3-0.6 s), and VACUUM skips what is
      still all-visible. Where autovacuum is on, migration 010's thresholds have it do the
      same in the background.

    Tables over VACUUM_MAX_PAGES are left to autovacuum. SKIP_LOCKED: if another sync is
    vacuuming the same table, leave it to that one rather than wait. A VACUUM that fails
    (a statement timeout, say) is logged and skipped: the load it follows has committed, and
    maintenance must not fail the sync."""
    params = {"tables": tables, "max_pages": VACUUM_MAX_PAGES}
    with eng.connect() as conn:
        needed = list(conn.execute(q("core/vacuum_needed"), params).scalars())
    done: list[str] = []
    if needed:
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in needed:  # names come from pg_class, filtered by our own constant list
                try:
                    conn.execute(sa.text(f"VACUUM (SKIP_LOCKED) {name}"))
                except sa.exc.DBAPIError as exc:
                    log.warning("VACUUM %s skipped: %s", name, exc.orig)
                    continue
                done.append(name)
    return done


def vacuum_after_load(eng: sa.Engine, tables: list[str]) -> dict[str, str | float]:
    """`vacuum_if_needed`, as metadata for the asset that loaded the tables: which tables
    were vacuumed and how long it took (both plot over runs in the UI)."""
    started = time.monotonic()
    vacuumed = vacuum_if_needed(eng, tables)
    return {
        "vacuumed": ", ".join(vacuumed) or "none",
        "vacuum_seconds": round(time.monotonic() - started, 3),
    }


@contextmanager
def tenant_lock(conn: sa.Connection, tenant: str) -> Iterator[None]:
    """Hold the tenant's transaction-scoped advisory lock: one writer per tenant at a time."""
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtext('sync-pipeline:tenant:' || :t))"),
        {"t": tenant},
    )
    yield
