"""`sync-pipeline explain TENANT EMAIL_OR_UPN`: will this person be synced, and if not, why."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import click

from sync_pipeline.cli.common import console, fail, handle_errors, prepare
from sync_pipeline.cli.common import shown as escape
from sync_pipeline.cli.explainview import explanation_panel
from sync_pipeline.core import db
from sync_pipeline.explain import lookup as explain
from sync_pipeline.registry import tenants


@click.command("explain")
@click.argument("tenant")
@click.argument("email_or_upn")
@handle_errors
def explain_command(tenant: str, email_or_upn: str) -> None:
    """Say whether EMAIL_OR_UPN will be synced for TENANT: address, groups and manager, or
    every reason it is left out.

    Matches UPN, mail, any proxy address, the resolved address or the Graph id, ignoring case.
    Reads the latest sync or test sync; run `sync-pipeline sync TENANT --dry-run` to refresh.
    """
    prepare()
    with db.engine().connect() as conn:
        stored = tenants.get(conn, tenant).settings
        found = explain.lookup(conn, stored, email_or_upn)
        when = explain.extracted_at(conn, tenant)
    if when is None:
        fail(
            f"tenant {tenant} has not been read from Graph yet; run "
            f"`sync-pipeline sync {tenant} --dry-run` first"
        )
    zone = ZoneInfo(stored.timezone)
    if not found:
        with db.engine().connect() as conn:
            gone = explain.withheld_sentences(conn, stored, email=email_or_upn)
        if gone:  # no longer in Graph, still active in the app: what the gate says
            console.print(
                f"{tenant}: {escape(repr(email_or_upn))} is no longer in Graph; in the app:"
            )
            for sentence in gone:
                console.print(f"  • {escape(sentence)}", soft_wrap=True)
            return
        fail(
            f"tenant {tenant}: no user matches {email_or_upn!r} (UPN, mail, proxy address or "
            f"Graph id) in the directory read at {when.astimezone(zone):%Y-%m-%d %H:%M %Z}; "
            "check the spelling, or sync again if the user is new"
        )
    console.print(
        f"{tenant}: {len(found)} user(s) match {escape(repr(email_or_upn))} "
        f"[dim](directory read at {when.astimezone(zone):%Y-%m-%d %H:%M %Z})[/]"
    )
    for x in found:
        console.print(explanation_panel(x))
