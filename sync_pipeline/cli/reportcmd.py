"""`sync-pipeline report TENANT RUN_ID --csv FILE`: every change a run planned, as CSV."""

from __future__ import annotations

from pathlib import Path

import click

from sync_pipeline.cli.common import console, fail, handle_errors, prepare
from sync_pipeline.core import db
from sync_pipeline.load import diff
from sync_pipeline.registry import tenants
from sync_pipeline.report import build as report


@click.command("report")
@click.argument("tenant")
@click.argument("run_id", type=click.IntRange(min=1))
@click.option(
    "--csv",
    "path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="Write the CSV here ('-' for standard output).",
)
@handle_errors
def report_command(tenant: str, run_id: int, path: Path) -> None:
    """Write every change that sync run RUN_ID of TENANT planned (a test sync's report, or
    what a sync applied) as CSV: entity, action, key, who or what, before, after.

    The emailed report of a very large run counts memberships per group instead of listing
    them; this writes the complete list.
    """
    prepare()
    with db.engine().connect() as conn:
        tenants.get(conn, tenant)  # an unknown tenant is a clear error
        run = report.planned_run(conn, tenant, run_id)
        if run is None:
            fail(
                f"tenant {tenant} has no sync run {run_id}; `sync-pipeline history {tenant}` "
                "lists applied runs"
            )
        planned = sum((run.planned or {}).get(k, 0) for k in diff.COUNT_KEYS)
        if planned and not run.rows:
            fail(
                f"tenant {tenant}: the planned changes of run {run_id} are no longer kept "
                f"(only the tenant's last 10 runs keep them, and a database restart clears "
                f"them); `sync-pipeline history {tenant} --run "
                f"{run_id}` shows what it applied"
            )
        if str(path) == "-":
            with click.open_file("-", "wb") as out:  # standard output, left open
                report.write_changes_csv(conn, tenant, run_id, out)
                out.flush()
            return
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as file:
            rows = report.write_changes_csv(conn, tenant, run_id, file)
        partial.replace(path)  # never a half-written file under the name asked for
    console.print(f"{tenant}: {rows} change(s) of run {run_id} written to {path}")
