"""Database access: which server, the embedded default, migrations, SQL loaded by name, locks.

`DATABASE_URL` selects the Postgres server. Without it an embedded PostgreSQL (pgserver, a
pip-installed server) is started on demand in `$SYNC_PIPELINE_HOME/pgdata` and left running,
so later commands reuse it; `sync-pipeline db stop` stops it. No Dagster imports here.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"


class DatabaseError(RuntimeError):
    """The database could not be reached or prepared; the message says what to do."""


def home() -> Path:
    """The project's local state folder (embedded Postgres, Dagster home, fake Graph CA)."""
    path = Path(os.environ.get("SYNC_PIPELINE_HOME", ".sync_pipeline")).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pgdata() -> Path:
    return home() / "pgdata"


def embedded_running() -> bool:
    pid_file = _pgdata() / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return False
    return True


def _import_pgserver():
    # Imported late (only users without DATABASE_URL need it), and quietly: platformdirs warns
    # about an unset XDG_RUNTIME_DIR, which pgserver handles itself.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


@functools.cache
def _embedded_uri() -> str:
    pgserver = _import_pgserver()

    # cleanup_mode=None: the server outlives this process and is reused by later commands.
    server = pgserver.get_server(_pgdata(), cleanup_mode=None)
    return server.get_uri()


def database_url() -> str:
    """The configured server's URL, starting the embedded one when DATABASE_URL is unset."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return _embedded_uri()


def stop_embedded() -> bool:
    """Stop the embedded server cleanly (pg_ctl stop -m fast). False when it was not running."""
    if not embedded_running():
        return False
    pg_ctl = _import_pgserver().pg_ctl

    # pgserver runs the server as its own OS user when we are root.
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=_pgdata(), user=user)
    _embedded_uri.cache_clear()
    return True


def with_driver(url: str, driver: str) -> str:
    """The same URL with an explicit SQLAlchemy driver (psycopg for ours, psycopg2 for Dagster).

    SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which dagster-postgres cannot use.
    """
    u = make_url(url)
    return u.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@functools.cache
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(with_driver(url, "psycopg"), pool_pre_ping=True, future=True)


def engine(url: str | None = None) -> sa.Engine:
    """A pooled engine (psycopg 3) for the configured server, one per URL and process."""
    return _engine(url or database_url())


@functools.cache
def load_sql(name: str) -> str:
    """A statement from sql/<name>.sql; statements there use bound :parameters only."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL statement {name!r} at {path}")
    return path.read_text()


def q(name: str) -> sa.TextClause:
    return sa.text(load_sql(name))


def analyze_if_stale(conn: sa.Connection, tables: list[str]) -> list[str]:
    """ANALYZE those of `tables` the planner has no or stale statistics for (see
    sql/stale_stats.sql); returns them. Inside the caller's transaction, so its own new rows
    count. Autovacuum gets there too, but a minute or more later: a tenant's first load would
    otherwise be checked and diffed with plans made for empty tables (a scan of a million
    memberships estimated at a few thousand rows: no parallel plan, nested loops)."""
    stale = list(conn.execute(q("stale_stats"), {"tables": tables}).scalars())
    for name in stale:  # names come from pg_class, filtered by our own constant list
        conn.execute(sa.text(f"ANALYZE {name}"))
    return stale


# Above this size (1 GB) a staging or snapshot table holds many tenants' rows, and a VACUUM
# would hold up one tenant's sync for the others' changes: autovacuum's (migration 010).
VACUUM_MAX_PAGES = 131_072


def vacuum_if_needed(eng: sa.Engine, tables: list[str]) -> list[str]:
    """VACUUM those of `tables` that need it right after a load (sql/vacuum_needed.sql);
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
        needed = list(conn.execute(q("vacuum_needed"), params).scalars())
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


def vacuum_after_load(eng: sa.Engine, tables: list[str]) -> dict[str, object]:
    """`vacuum_if_needed`, as metadata for the asset that loaded the tables: which tables
    were vacuumed and how long it took (both plot over runs in the UI)."""
    started = time.monotonic()
    vacuumed = vacuum_if_needed(eng, tables)
    return {
        "vacuumed": ", ".join(vacuumed) or "none",
        "vacuum_seconds": round(time.monotonic() - started, 3),
    }


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))


def upgrade(eng: sa.Engine | None = None) -> list[str]:
    """Apply the DDL files not yet recorded in sync.schema_migrations; returns their names.

    Every file is idempotent, and a file whose content changed is applied again. A session
    advisory lock keeps concurrent upgrades (the UI and a CLI sync) from racing.
    """
    eng = eng or engine()
    applied: list[str] = []
    try:
        with eng.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('sync-pipeline:migrate'))"))
            conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS sync"))
            conn.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS sync.schema_migrations ("
                    " filename text PRIMARY KEY, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            done = dict(
                conn.execute(sa.text("SELECT filename, checksum FROM sync.schema_migrations")).all()
            )
            for path in migration_files():
                body = path.read_text()
                checksum = hashlib.sha256(body.encode()).hexdigest()
                if done.get(path.name) == checksum:
                    continue
                conn.exec_driver_sql(body)
                conn.execute(
                    sa.text(
                        "INSERT INTO sync.schema_migrations (filename, checksum) VALUES (:f, :c)"
                        " ON CONFLICT (filename) DO UPDATE"
                        " SET checksum = excluded.checksum, applied_at = now()"
                    ),
                    {"f": path.name, "c": checksum},
                )
                applied.append(path.name)
    except sa.exc.OperationalError as exc:
        raise DatabaseError(
            f"cannot reach Postgres at {redact(str(eng.url))}: {exc.orig}. Check DATABASE_URL, "
            "or unset it to use the embedded server."
        ) from None
    return applied


@contextmanager
def tenant_lock(conn: sa.Connection, tenant: str) -> Iterator[None]:
    """Hold the tenant's transaction-scoped advisory lock: one writer per tenant at a time."""
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtext('sync-pipeline:tenant:' || :t))"),
        {"t": tenant},
    )
    yield
