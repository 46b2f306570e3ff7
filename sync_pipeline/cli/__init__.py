"""The `sync-pipeline` command.

Exit codes scripts can trust: 0 success; 1 the sync ran and failed; 2 bad input (arguments,
settings, an unknown tenant, a configuration the sync's preflight refuses: an unset secret,
a CA file or certificate that does not load, a Graph host that cannot be reached); 3 the sync
was refused by the deactivation safety limit; 4 the tenant already has a run in progress
(nothing ran); 130 the sync was stopped by Ctrl-C (it says
what was applied).
"""

from __future__ import annotations

import logging
import os
import sys

import click

from sync_pipeline.cli import common
from sync_pipeline.cli.connectcmd import connect_command
from sync_pipeline.cli.dbcmd import db_group
from sync_pipeline.cli.democmd import demo_command
from sync_pipeline.cli.doctorcmd import doctor_command
from sync_pipeline.cli.eventscmd import events_command
from sync_pipeline.cli.explaincmd import explain_command
from sync_pipeline.cli.fakegraphcmd import fakegraph_group
from sync_pipeline.cli.heldcmd import approve_command, held_command, pending_command, reject_command
from sync_pipeline.cli.historycmd import history_command
from sync_pipeline.cli.notificationscmd import notifications_group
from sync_pipeline.cli.reportcmd import report_command
from sync_pipeline.cli.synccmd import sync_command
from sync_pipeline.cli.tenantcmd import tenant_group
from sync_pipeline.cli.uicmd import ui_command
from sync_pipeline.cli.undocmd import undo_command
from sync_pipeline.cli.wizard import setup_command
from sync_pipeline.core import config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show Dagster's own log lines too.")
@click.version_option(package_name="sync-pipeline")
def main(verbose: bool) -> None:
    """Sync Microsoft 365 / Entra ID directories into the app, one tenant at a time.

    With no DATABASE_URL an embedded PostgreSQL is started in the state folder
    ($SYNC_PIPELINE_HOME, default the user's data directory, e.g.
    ~/.local/share/sync-pipeline) and reused by later commands, from any folder.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    config.export_default(config.DAGSTER_DISABLE_TELEMETRY, "1")
    common.options.verbose = verbose


main.add_command(sync_command)
main.add_command(ui_command)
main.add_command(db_group)
main.add_command(demo_command)
main.add_command(tenant_group)
main.add_command(fakegraph_group)
main.add_command(explain_command)
main.add_command(history_command)
main.add_command(events_command)
main.add_command(report_command)
main.add_command(undo_command)
main.add_command(pending_command)
main.add_command(held_command)
main.add_command(approve_command)
main.add_command(reject_command)
main.add_command(doctor_command)
main.add_command(notifications_group)
tenant_group.add_command(connect_command)
tenant_group.add_command(setup_command)


def run() -> None:
    """The `sync-pipeline` entry point: `main`, then, after a command that asked for it (a
    sync that ended), the process leaves without tearing down the interpreter.

    Freeing every module and object a sync imported (Dagster, great-expectations, pandas) at
    exit took ~1-1.4 s, longer than many of the sync's own steps; nothing is left to do by
    then (the run is recorded, its connections are idle, no thread holds work), so output is
    flushed and the process ends. Commands run through click's test runner never get here.
    """
    try:
        main(prog_name="sync-pipeline")
    except SystemExit as exc:
        if not common.options.exit_at_once:
            raise
        if not isinstance(exc.code, int | None):
            raise  # a message to print: Python's own exit prints it
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code or 0)
