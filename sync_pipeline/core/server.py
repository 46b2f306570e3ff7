"""Which Postgres server: DATABASE_URL, or the embedded one (pgserver), and its engine.

`DATABASE_URL` selects the Postgres server. Without it an embedded PostgreSQL (pgserver, a
pip-installed server) is started on demand in `<state folder>/pgdata` and left running, so
later commands reuse it; `sync-pipeline db stop` stops it. The state folder is
`$SYNC_PIPELINE_HOME`, or the user's data directory (platformdirs), never the current folder.
Everyone else reaches these through `sync_pipeline.core.db`. No Dagster imports here.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import warnings
from pathlib import Path

import platformdirs
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sync_pipeline.core import config


class DatabaseError(RuntimeError):
    """The database could not be reached or prepared; the message says what to do."""


class DatabaseURLError(DatabaseError, ValueError):
    """DATABASE_URL is not a Postgres URL: bad input (exit 2), refused before any connection."""


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
