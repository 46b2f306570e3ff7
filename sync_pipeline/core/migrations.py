"""Migrations: the ordered DDL files of sql/migrations, each applied once with its checksum.

Everyone else reaches these through `sync_pipeline.core.db`. No Dagster imports here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import sqlalchemy as sa

from sync_pipeline.core.server import DatabaseError, engine, redact

# Package resources, like the statements in db.py: found wherever the package is installed.
MIGRATIONS_DIR: Traversable = resources.files("sync_pipeline") / "sql" / "migrations"


class MigrationError(DatabaseError):
    """The migration files and what the database recorded disagree; the message says why."""


def migration_files() -> list[Traversable]:
    """The numbered migration files, in order (`NNN_name.sql`)."""
    if not MIGRATIONS_DIR.is_dir():
        return []
    found = [f for f in MIGRATIONS_DIR.iterdir() if _MIGRATION_NAME.fullmatch(f.name)]
    return sorted(found, key=lambda f: f.name)


_MIGRATION_NAME = re.compile(r"[0-9]{3}_[^/]*\.sql")


def _shown(folder: Traversable) -> str:
    """The folder as an operator finds it on disk: sync_pipeline/sql is a link to the
    checkout's sql/, so a path is shown resolved; a resource in an archive as it is."""
    return str(folder.resolve()) if isinstance(folder, Path) else str(folder)


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
            f"no migration files in {_shown(MIGRATIONS_DIR)}: this installation lacks the "
            "project's sql/ folder; reinstall sync-pipeline (its wheel carries sql/), or from "
            "a source checkout with pip install -e ."
        )
    names = {path.name for path in files}
    unknown = sorted(set(reapply) - names)
    if unknown:
        raise MigrationError(
            f"--reapply {', '.join(unknown)}: no such migration file in {_shown(MIGRATIONS_DIR)} "
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
