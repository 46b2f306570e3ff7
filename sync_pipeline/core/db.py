"""Database access: which server, the embedded default, migrations, SQL loaded by name, locks.

`DATABASE_URL` selects the Postgres server. Without it an embedded PostgreSQL (pgserver, a
pip-installed server) is started on demand in `<state folder>/pgdata` and left running, so
later commands reuse it; `sync-pipeline db stop` stops it. The state folder is
`$SYNC_PIPELINE_HOME`, or the user's data directory (platformdirs), never the current folder.
No Dagster imports here.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import platformdirs
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sync_pipeline.core import config

log = logging.getLogger(__name__)

# The statements ship inside the package (the wheel carries the repository's sql/ folder as
# sync_pipeline/sql, see pyproject.toml), so they are found as package resources wherever the
# package is installed, never by walking up from this file.
SQL_DIR: Traversable = resources.files("sync_pipeline") / "sql"
MIGRATIONS_DIR: Traversable = SQL_DIR / "migrations"


class DatabaseError(RuntimeError):
    """The database could not be reached or prepared; the message says what to do."""


class DatabaseURLError(DatabaseError, ValueError):
    """DATABASE_URL is not a Postgres URL: bad input (exit 2), refused before any connection."""


class MigrationError(DatabaseError):
    """The migration files and what the database recorded disagree; the message says why."""


APP_NAME = "sync-pipeline"
OLD_DEFAULT_HOME = ".sync_pipeline"  # before 0.2 the state lived in the current folder


def home() -> Path:
    """The project's local state folder (embedded Postgres, Dagster home, outbox, fake Graph CA).

    `$SYNC_PIPELINE_HOME`, or the user's data directory (e.g. ~/.local/share/sync-pipeline):
    never the current folder, so a command run from elsewhere finds the same database. The
    command that creates the default folder says where, once, on stderr.
    """
    chosen = config.home()
    if chosen:
        path = Path(chosen).expanduser().resolve()
    else:
        path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)).resolve()
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        if not chosen:
            _announce_home(path)
    return path


def _announce_home(path: Path) -> None:
    # stderr, not the log: the CLI shows only warnings, and scripts read stdout.
    line = f"sync-pipeline: state (embedded Postgres, Dagster home) lives in {path}"
    old = Path(OLD_DEFAULT_HOME).resolve()
    if (old / "pgdata").is_dir() or (old / "dagster").is_dir():
        line += (
            f"; an older state folder is in {old}: to keep using it, "
            f"export SYNC_PIPELINE_HOME={old}"
        )
    else:
        line += " (set SYNC_PIPELINE_HOME to choose another folder)"
    sys.stderr.write(line + "\n")


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


def using_embedded() -> bool:
    """True when no DATABASE_URL is set: the embedded server of this machine's state folder."""
    return not config.database_url()


def database_url() -> str:
    """The configured server's URL, starting the embedded one when DATABASE_URL is unset."""
    url = config.database_url()
    if url:
        return check_url(url)
    return _embedded_uri()


_EXPECTED = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def check_url(url: str, *, name: str = "DATABASE_URL") -> str:
    """`url` if it is a Postgres URL; otherwise DatabaseURLError saying what is wrong.

    Refused rather than rewritten: with_driver would turn mysql:// or sqlite:// into a
    postgresql URL to some other server, or to none, and fail later with a puzzling error.
    """
    # Never echo a password: mask what sits between "user:" and "@" when the URL is unparseable.
    shown = re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)
    try:
        parsed = make_url(url)
    except (ValueError, sa.exc.ArgumentError):
        raise DatabaseURLError(
            f"{name} {shown!r} is not a database URL; write it as {_EXPECTED}, "
            "or unset it to use the embedded server"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres"):
        raise DatabaseURLError(
            f"{name} {redact(url)!r} is a {backend} URL; sync-pipeline needs PostgreSQL "
            f"({_EXPECTED}), or unset {name} to use the embedded server"
        )
    return url


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


def analyze_if_stale(
    conn: sa.Connection, tables: list[str], tenant: str | None = None
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
    counted only up to ten times it: a bounded index scan, no full count."""
    stale = list(conn.execute(q("core/stale_stats"), {"tables": tables}).scalars())
    if tenant is not None:
        for name in (t for t in tables if t not in stale):
            # names are this project's constants, never data
            plan = conn.execute(
                sa.text(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {name} WHERE tenant = :t"),
                {"t": tenant},
            ).scalar_one()
            estimate = int(plan[0]["Plan"]["Plan Rows"])
            bound = 10 * estimate + 1_000
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


def migration_files() -> list[Traversable]:
    """The numbered migration files, in order (`NNN_name.sql`)."""
    if not MIGRATIONS_DIR.is_dir():
        return []
    found = [f for f in MIGRATIONS_DIR.iterdir() if _MIGRATION_NAME.fullmatch(f.name)]
    return sorted(found, key=lambda f: f.name)


_MIGRATION_NAME = re.compile(r"[0-9]{3}_[^/]*\.sql")


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def upgrade(eng: sa.Engine | None = None, *, reapply: Iterable[str] = ()) -> list[str]:
    """Apply the DDL files not yet recorded in sync.schema_migrations; returns their names.

    An applied file whose content changed since is refused (MigrationError naming it), never
    re-applied silently: the database may hold what the old text did, and whether the new text
    is safe to run over it is the author's call. `reapply` names files to run again anyway
    (`sync-pipeline db upgrade --reapply FILE`). No migration files at all is an error too: an
    installation without `sql/` would otherwise start against empty schemas. A transaction-
    scoped advisory lock keeps concurrent upgrades (the UI and a CLI sync) from racing; a
    refusal rolls everything back.
    """
    eng = eng or engine()
    files = migration_files()
    if not files:
        raise MigrationError(
            f"no migration files in {MIGRATIONS_DIR}: this installation lacks the project's "
            "sql/ folder; install sync-pipeline from its source checkout (pip install -e .)"
        )
    names = {path.name for path in files}
    unknown = sorted(set(reapply) - names)
    if unknown:
        raise MigrationError(
            f"--reapply {', '.join(unknown)}: no such migration file in {MIGRATIONS_DIR} "
            f"(there are {files[0].name} ... {files[-1].name})"
        )
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
            done = {
                row.filename: row
                for row in conn.execute(
                    sa.text("SELECT filename, checksum, applied_at FROM sync.schema_migrations")
                )
            }
            for path in files:
                body = path.read_text()
                checksum = _checksum(body)
                recorded = done.get(path.name)
                if recorded is not None and recorded.checksum == checksum:
                    continue
                if recorded is not None and path.name not in reapply:
                    raise MigrationError(_changed_message(path, recorded.applied_at))
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


def _changed_message(path: Traversable, applied_at: object) -> str:
    rel = f"sql/migrations/{path.name}"
    return (
        f"migration {path.name} was applied to this database on {applied_at:%Y-%m-%d %H:%M %Z} "
        f"and {rel} has changed since; an applied migration is never re-applied silently. "
        f"Either restore the file (git checkout -- {rel}) and put the change in a new "
        "migration file with the next number, or, if the file is idempotent and running it "
        f"again is what you want: sync-pipeline db upgrade --reapply {path.name}"
    )


@contextmanager
def tenant_lock(conn: sa.Connection, tenant: str) -> Iterator[None]:
    """Hold the tenant's transaction-scoped advisory lock: one writer per tenant at a time."""
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtext('sync-pipeline:tenant:' || :t))"),
        {"t": tenant},
    )
    yield
