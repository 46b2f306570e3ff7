"""`sync-pipeline undo TENANT RUN_ID`: revert one applied sync, as an audited run of its own."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import click
from rich.table import Table

from sync_pipeline.audit import changes as audit
from sync_pipeline.cli.common import EXIT_FAILED, console, err_console, fail, handle_errors, prepare
from sync_pipeline.core import db
from sync_pipeline.registry import tenants


def _counts_table(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column("change")
    table.add_column("count", justify="right")
    for key in sorted(counts):
        table.add_row(key.replace("_", " "), str(counts[key]))
    return table


@click.command("undo")
@click.argument("tenant")
@click.argument("run_id", type=click.IntRange(min=1))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def undo_command(tenant: str, run_id: int, yes: bool) -> None:
    """Revert the changes sync run RUN_ID applied to TENANT's app, in one transaction.

    Users the run created are deactivated, never deleted; changed fields, managers,
    deactivations and reactivations get their previous values; groups it created are marked
    removed; memberships it added are removed and those it removed are added back. Refused,
    naming the rows, when a later run changed the same rows (undo those first, newest first).
    The undo is a run of its own in `sync-pipeline history`, and can be undone.

    Exit codes: 0 undone (or nothing to undo), 1 refused or failed, 2 bad input.
    """
    prepare()
    with db.engine().connect() as conn:
        settings = tenants.get(conn, tenant).settings
        try:
            plan = audit.plan_undo(conn, tenant, run_id)
        except audit.UnknownRunError as exc:
            fail(str(exc))
        except audit.UndoRefused as exc:
            fail(str(exc), EXIT_FAILED)
    zone = ZoneInfo(settings.timezone)
    when = plan.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
    if not plan.total:
        console.print(f"{tenant}: run {run_id} ({when}) applied no changes; nothing to undo")
        return
    if plan.conflicts:
        fail(audit.refusal(plan), EXIT_FAILED)
    console.print(_counts_table(f"{tenant}: undo run {run_id} of {when}", plan.counts))
    if not yes and not click.confirm(f"Revert these {plan.total} changes?", default=False):
        err_console.print("nothing changed")
        raise SystemExit(EXIT_FAILED)
    try:
        with (
            err_console.status(f"undoing run {run_id}…"),
            db.engine().begin() as conn,
        ):
            undo_id, counts = audit.undo(conn, tenant, run_id)
    except audit.UndoRefused as exc:
        fail(str(exc), EXIT_FAILED)
    console.print(_counts_table(f"{tenant}: run {undo_id} undid run {run_id}", counts))
    console.print(
        f"undone; `sync-pipeline history {tenant} --run {undo_id}` shows every change, "
        f"`sync-pipeline undo {tenant} {undo_id}` applies run {run_id}'s changes again"
    )
