"""`sync-pipeline sync TENANT`: run the sync (or test sync) job through Dagster, with progress.

The run executes in this process and is recorded in the Dagster instance, so it shows in the
UI afterwards (the run itself: cli/syncrun.py).
"""

from __future__ import annotations

import click

from sync_pipeline.cli import actions
from sync_pipeline.cli.common import handle_errors, options


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
@handle_errors
def sync_command(
    tenant: str, dry_run: bool, allow_mass_deactivation: bool, full_read: bool
) -> None:
    """Sync one TENANT now (a manual sync), recorded in Dagster like any other run.

    Ctrl-C stops the sync at the next step (during the apply: once it has committed) and
    says what was applied; a second Ctrl-C leaves at once and says what state TENANT is in.
    """
    try:
        actions.sync(
            tenant,
            dry_run=dry_run,
            allow_mass_deactivation=allow_mass_deactivation,
            full_read=full_read,
        )
    finally:
        options.exit_at_once = True  # the run is over, recorded, its outcome printed
