"""`sync-pipeline pending | held | approve | reject TENANT`: what the deactivation gate withheld
from the last sync (sync_pipeline/load/gate.py), and people's decisions on it."""

from __future__ import annotations

import getpass

import click
from rich.table import Table

from sync_pipeline.cli import actions
from sync_pipeline.cli.common import EXIT_FAILED, console, err_console, fail, handle_errors, prepare
from sync_pipeline.cli.common import shown as escape
from sync_pipeline.core import config, db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.load import gate
from sync_pipeline.registry import tenants

_STATUS = {
    "pending": "pending (grace period)",
    "held": "held (over a limit)",
    "protected": "protected",
    "rejected": "rejected",
    "app_decision": "the app decided otherwise",
}


def _load(tenant: str, statuses: tuple[str, ...]) -> tuple[TenantSettings, list[gate.Withheld]]:
    prepare()
    with db.engine().connect() as conn:
        settings = tenants.get(conn, tenant).settings
        return settings, gate.withheld(conn, tenant, statuses)


def _who(w: gate.Withheld) -> str:
    if w.kind.startswith("membership"):
        return f"{w.group or '?'} / {w.email or w.label}"
    return w.email or w.label


def _table(title: str, rows: list[gate.Withheld], settings: TenantSettings) -> Table:
    table = Table(title=f"{title} (times {settings.timezone})")
    for name in ("change", "who", "status", "since", "why", "decision"):
        table.add_column(name, overflow="fold")
    for w in rows:
        decision = f"{w.decision} by {w.decided_by}" if w.decision else ""
        table.add_row(
            w.kind.replace("_", " "),
            escape(_who(w)),
            _STATUS.get(w.status, w.status),
            gate.local_time(w.held_since or w.since, settings.timezone, ""),
            escape(gate.sentence(w, settings.timezone, settings)),
            escape(decision),
        )
    return table


@click.command("pending")
@click.argument("tenant")
@handle_errors
def pending_command(tenant: str) -> None:
    """List TENANT's people pending deactivation: out of scope in Graph, still active in the
    app during the grace period (deactivation_grace_reads complete reads and
    deactivation_grace_hours), with when each will be deactivated and why.

    As of the last applied sync. Exit codes: 0 listed (or none), 2 bad input.
    """
    settings, rows = _load(tenant, ("pending",))
    if not rows:
        console.print(f"{tenant}: nobody is pending deactivation (as of the last applied sync)")
        return
    console.print(_table(f"{tenant}: {len(rows)} pending deactivation", rows, settings))


@click.command("held")
@click.argument("tenant")
@handle_errors
def held_command(tenant: str) -> None:
    """List every change the last applied sync of TENANT withheld: deactivations and group
    removals held over a limit, protected people, rejected changes, and reactivations or
    re-adds the sync did not make because the app decided otherwise.

    Decide with `approve` / `reject`. Exit codes: 0 listed (or none), 2 bad input.
    """
    settings, rows = _load(tenant, gate.LISTED)
    if not rows:
        console.print(f"{tenant}: nothing is withheld (as of the last applied sync)")
        return
    console.print(_table(f"{tenant}: {len(rows)} withheld change(s)", rows, settings))
    console.print(
        f"approve: `sync-pipeline approve {tenant} EMAIL...` (or --all); "
        f"keep as it is: `sync-pipeline reject {tenant} EMAIL... --reason TEXT`",
        soft_wrap=True,
    )


def _decider(by: str | None) -> str:
    who = (by or config.operator() or getpass.getuser()).strip()
    if not who:
        fail("--by: say who decides (a name or an address)")
    return who


def _decide(
    tenant: str,
    emails: tuple[str, ...],
    everything: bool,
    decision: str,
    by: str | None,
    note: str | None,
    yes: bool,
) -> int:
    if everything == bool(emails):
        fail("name the people (EMAIL...) or give --all, not both and not neither")
    decider = _decider(by)
    settings, rows = _load(tenant, gate.LISTED)
    try:
        chosen = gate.select(rows, emails, everything, tenant)
    except gate.NothingToDecide as exc:
        fail(str(exc))
    verb = "approve" if decision == "approved" else "reject"
    console.print(_table(f"{tenant}: {verb} {len(chosen)} change(s)", chosen, settings))
    if not yes and not click.confirm(f"{verb.capitalize()} these {len(chosen)}?", default=False):
        err_console.print("nothing decided")
        raise SystemExit(EXIT_FAILED)
    with db.engine().begin() as conn:
        run_id = gate.decide(conn, tenant, chosen, decision, decider, note)
    console.print(
        f"{tenant}: run {run_id}: {len(chosen)} change(s) {decision} by {escape(decider)}; "
        f"`sync-pipeline history {tenant} --run {run_id}` shows them, "
        f"`sync-pipeline undo {tenant} {run_id}` takes the decision back",
        soft_wrap=True,
    )
    return run_id


_PEOPLE = click.argument("emails", nargs=-1, metavar="[EMAIL]...")
_ALL = click.option("--all", "everything", is_flag=True, help="Every withheld change.")
_BY = click.option(
    "--by", help="Who decides (default: $SYNC_PIPELINE_OPERATOR, else the login name)."
)
_YES = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


@click.command("approve")
@click.argument("tenant")
@_PEOPLE
@_ALL
@_BY
@click.option("--reason", "note", help="Why (kept with the decision and in the history).")
@click.option("--apply", "apply_now", is_flag=True, help="Sync TENANT now to apply them.")
@_YES
@handle_errors
def approve_command(
    tenant: str,
    emails: tuple[str, ...],
    everything: bool,
    by: str | None,
    note: str | None,
    apply_now: bool,
    yes: bool,
) -> None:
    """Approve withheld changes of TENANT: the people named by EMAIL (every change withheld
    for them), or --all. A held or pending deactivation is applied by the next sync, as are a
    reactivation or a re-add the app had undone; with --apply, a sync runs now.

    The decision is a run of its own in `history`, and `undo` takes it back. Exit codes: 0
    decided (with --apply: and the sync succeeded), 1 not confirmed or the sync failed, 2 bad
    input (an EMAIL with nothing withheld).
    """
    _decide(tenant, emails, everything, "approved", by, note, yes)
    if apply_now:
        actions.sync(tenant, dry_run=False)


@click.command("reject")
@click.argument("tenant")
@_PEOPLE
@_ALL
@_BY
@click.option("--reason", "note", required=True, help="Why (kept with the decision).")
@_YES
@handle_errors
def reject_command(
    tenant: str,
    emails: tuple[str, ...],
    everything: bool,
    by: str | None,
    note: str,
    yes: bool,
) -> None:
    """Reject withheld changes of TENANT: the people named by EMAIL stay as they are in the
    app (active, in their groups) while Graph keeps asking for the change; once Graph
    changes them again (back in scope), the rejection is forgotten.

    Recorded with who decided and why, as a run of its own in `history`; `undo` takes it
    back. Exit codes: 0 decided, 1 not confirmed, 2 bad input.
    """
    _decide(tenant, emails, everything, "rejected", by, note, yes)
