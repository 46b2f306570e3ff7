"""`sync-pipeline history TENANT`: the changes syncs (and undos) applied, newest first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from sync_pipeline.audit import changes as audit
from sync_pipeline.cli.common import console, handle_errors, prepare, shown
from sync_pipeline.core import db
from sync_pipeline.registry import runs, tenants


def _doc(value: object) -> str:
    if not value:
        return ""
    if isinstance(value, dict):
        return ", ".join(
            f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in value.items()
        )
    return json.dumps(value, ensure_ascii=False, default=str)


def _print_unfinished(tenant: str, rows: Sequence[Any], zone: ZoneInfo) -> None:
    """The latest runs that applied nothing because they failed, were stopped or died."""
    for r in rows:
        when = r.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
        kind = "test sync" if r.dry_run else "sync"
        reason = f": {r.error}" if r.error else ""
        console.print(f"{tenant}: {kind} run {r.id} ({when}) {r.status}{reason}", soft_wrap=True)


@click.command("history")
@click.argument("tenant")
@click.option("--user", "email", metavar="EMAIL", help="Only changes to this person (any case).")
@click.option("--run", "run_id", type=click.IntRange(min=1), help="Only this sync run's changes.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Show at most this many changes.",
)
@handle_errors
def history_command(tenant: str, email: str | None, run_id: int | None, limit: int) -> None:
    """Show the changes applied to TENANT's app users, groups, memberships and managers,
    newest first, with the values before and after, in the tenant's time zone.

    Each change names its sync run; `sync-pipeline undo TENANT RUN` reverts a run.
    """
    prepare()
    with db.engine().connect() as conn:
        settings = tenants.get(conn, tenant).settings
        rows = audit.history(conn, tenant, email=email, run_id=run_id, limit=limit)
        unfinished = [] if run_id or email else runs.unfinished(conn, tenant, limit=10)
    zone = ZoneInfo(settings.timezone)
    _print_unfinished(tenant, unfinished, zone)
    scope = " ".join(
        part
        for part in (f"for {email}" if email else "", f"in run {run_id}" if run_id else "")
        if part
    )
    if not rows:
        console.print(
            f"{tenant}: no applied changes {scope}".rstrip()
            + " (test syncs change nothing; a sync records what it applies)"
        )
        return
    table = Table(title=f"{tenant}: changes {scope}".rstrip() + f" (times {settings.timezone})")
    for name in ("when", "run", "entity", "action", "who / what", "before", "after"):
        table.add_column(name, overflow="fold")
    for r in rows:
        run = f"{r.run_id}" + (f" (undo of {r.undo_of})" if r.undo_of else "")
        table.add_row(
            r.applied_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z"),
            run,
            r.entity,
            r.action,
            shown(r.label or r.key),
            shown(_doc(r.before)),
            shown(_doc(r.after)),
        )
    console.print(table)
    if len(rows) == limit:
        console.print(f"[dim]showing the newest {limit}; use --limit for more[/]")
