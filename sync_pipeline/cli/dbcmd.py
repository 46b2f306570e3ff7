"""`sync-pipeline db ...`: the database server and its schemas."""

from __future__ import annotations

import click

from sync_pipeline.cli.common import console, handle_errors, prepare
from sync_pipeline.core import config, db


@click.group("db")
def db_group() -> None:
    """The Postgres server: schemas, status, the embedded server."""


@db_group.command("upgrade")
@click.option(
    "--reapply",
    multiple=True,
    metavar="FILE",
    help="Run this applied migration again although its file changed (it must be idempotent).",
)
@handle_errors
def upgrade(reapply: tuple[str, ...]) -> None:
    """Create or update every schema (staging, sync, app) from sql/migrations.

    An applied migration whose file has changed since is refused, naming the file; --reapply
    FILE runs it again on purpose.
    """
    url = db.database_url()
    applied = db.upgrade(db.engine(url), reapply=reapply)
    if applied:
        console.print(f"applied {len(applied)} file(s): {', '.join(applied)}")
    else:
        console.print("schemas are up to date")
    prepare()


@db_group.command("status")
@handle_errors
def status() -> None:
    """Which server is in use, and whether the embedded one is running."""
    if url := config.database_url():
        console.print(f"DATABASE_URL: {db.redact(url)}")
    else:
        state = "running" if db.embedded_running() else "stopped"
        console.print(f"embedded PostgreSQL in {db.home() / 'pgdata'}: {state}")


@db_group.command("stop")
@handle_errors
def stop() -> None:
    """Stop the embedded PostgreSQL cleanly (a later command starts it again)."""
    if db.stop_embedded():
        console.print("embedded PostgreSQL stopped")
    else:
        console.print("embedded PostgreSQL was not running")
