"""`sync-pipeline sync TENANT`: run the sync (or test sync) job through Dagster, with progress.

The run executes in this process and is recorded in the Dagster instance, so it shows in the
UI afterwards (the run itself: cli/syncrun.py).
"""

from __future__ import annotations

import click

from sync_pipeline.cli import actions
from sync_pipeline.cli.common import fail, handle_errors, options


@click.command("sync")
@click.argument("tenant")
@click.option(
    "--dry-run", is_flag=True, help="Test sync: report what would change; app.* untouched."
)
@click.option(
    "--allow-mass-deactivation",
    is_flag=True,
    help="Apply even when deactivations exceed the tenant's safety limit.",
)
@click.option(
    "--full",
    "full_read",
    is_flag=True,
    help="Read the whole directory again instead of only the changes since the last sync.",
)
@click.option(
    "--user",
    "user",
    metavar="EMAIL_OR_UPN",
    help="Sync only this person now (UPN, mail address or Graph id): read them, their manager "
    "and groups from Graph, apply the tenant's rules to them alone, and print each decision "
    "with the setting behind it. Nobody else changes; the next sync reads the rest.",
)
@handle_errors
def sync_command(
    tenant: str,
    dry_run: bool,
    allow_mass_deactivation: bool,
    full_read: bool,
    user: str | None,
) -> None:
    """Sync one TENANT now (a manual sync), recorded in Dagster like any other run.

    Ctrl-C stops the sync at the next step (during the apply: once it has committed) and
    says what was applied; a second Ctrl-C leaves at once and says what state TENANT is in.
    """
    if user is not None and not user.strip():
        fail("--user needs the person's UPN, mail address or Graph id")
    if user and full_read:
        fail("--user and --full do not go together: a run of one person reads only them")
    try:
        actions.sync(
            tenant,
            dry_run=dry_run,
            allow_mass_deactivation=allow_mass_deactivation,
            full_read=full_read,
            user=user.strip() if user else None,
        )
    finally:
        options.exit_at_once = True  # the run is over, recorded, its outcome printed
