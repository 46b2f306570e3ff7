"""`sync-pipeline sync TENANT`: run the sync (or test sync) job through Dagster, with progress.

The run executes in this process and is recorded in the Dagster instance, so it shows in the
UI afterwards. Progress comes from the run's own event log, polled while the job runs.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from sync_pipeline import db, runlimits, tenants
from sync_pipeline.cli.common import (
    EXIT_FAILED,
    EXIT_REFUSED,
    console,
    err_console,
    handle_errors,
    prepare,
)


def _describe(event: Any) -> str | None:
    import dagster as dg

    kind = event.dagster_event.event_type
    step = event.step_key or ""
    if kind == dg.DagsterEventType.STEP_START:
        return f"[cyan]▶[/] {step}"
    if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
        mat = event.dagster_event.event_specific_data.materialization
        shown = {
            k: v.value
            for k, v in mat.metadata.items()
            if isinstance(v.value, (int, float)) and not isinstance(v.value, bool)
        }
        figures = ", ".join(f"{k}={v}" for k, v in list(shown.items())[:8])
        return f"[green]✓[/] {mat.asset_key.to_user_string()}  [dim]{figures}[/]"
    if kind == dg.DagsterEventType.STEP_FAILURE:
        return f"[red]✗[/] {step}"
    return None


def _follow(instance: Any, run_id: str, worker: threading.Thread) -> None:
    """Print each stage as the run's event log records it, until the job thread ends."""
    import dagster as dg

    kinds = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        dg.DagsterEventType.STEP_FAILURE,
    }
    seen = 0
    with err_console.status("syncing…") as status:
        while True:
            alive = worker.is_alive()
            records = instance.all_logs(run_id, of_type=kinds)
            for event in records[seen:]:
                line = _describe(event)
                if line:
                    err_console.print(line)
                if event.step_key:
                    status.update(f"{event.step_key}…")
            seen = len(records)
            if not alive:
                return
            time.sleep(0.4)


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
    """Sync one TENANT now (a manual sync), recorded in Dagster like any other run."""
    prepare()
    import dagster as dg

    from sync_pipeline.cli.tenantcmd import _partitions_add
    from sync_pipeline.definitions import defs
    from sync_pipeline.defs.extract import FULL_READ_TAG

    with db.engine().connect() as conn:
        stored = tenants.get(conn, tenant)  # validates the settings before anything runs
    _partitions_add([tenant])
    job = defs.resolve_job_def("test_sync" if dry_run else "sync")
    run_config: dict[str, Any] = {
        "loggers": {"console": {"config": {"log_level": "DEBUG" if _verbose() else "ERROR"}}}
    }
    if not dry_run:
        run_config["ops"] = {
            "app_directory": {"config": {"allow_mass_deactivation": allow_mass_deactivation}}
        }
    instance = dg.DagsterInstance.get()
    runlimits.refuse_if_busy(instance, tenant)  # the run queue's one-run-per-tenant limit
    run_id = str(uuid.uuid4())  # known before the run starts, so progress can follow it
    outcome: dict[str, Any] = {}

    def execute() -> None:
        try:
            outcome["result"] = job.execute_in_process(
                run_config=run_config,
                instance=instance,
                partition_key=tenant,
                run_id=run_id,
                raise_on_error=False,
                tags={
                    "tenant": tenant,
                    "trigger": "test" if dry_run else "manual",
                    **({FULL_READ_TAG: "true"} if full_read else {}),
                },
            )
        except BaseException as exc:  # reported below, after progress stops
            outcome["error"] = exc

    worker = threading.Thread(target=execute, name="sync-run")
    worker.start()
    _follow(instance, run_id, worker)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    zone = ZoneInfo(stored.settings.timezone)
    if not result.success:
        message = _failure_message(result)
        err_console.print(f"[bold red]sync of {tenant} failed[/] (Dagster run {run_id})")
        err_console.print(message)
        refused = "--allow-mass-deactivation" in message
        code = EXIT_REFUSED if refused else EXIT_FAILED
        raise SystemExit(code)
    _print_summary(tenant, run_id, dry_run, zone)


def _verbose() -> bool:
    return bool(getattr(console, "verbose", False))


SAFETY_CHECK = "sync_diff_within_safety_limit"
# Checks that refuse a sync for being too big a change; --allow-mass-deactivation lifts them.
REFUSING_CHECKS = (SAFETY_CHECK, "snapshot_users_drift")


def _failure_message(result: Any) -> str:
    """What stopped the run: a failed blocking check first (its description says why and what
    to do), else the first failed step's own error."""
    import dagster as dg

    failed_checks = [
        e
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    failed_checks.sort(key=lambda e: e.check_name not in REFUSING_CHECKS)
    if failed_checks:
        lines = [
            f"check {e.asset_key.to_user_string()}:{e.check_name} failed: "
            f"{e.description or 'see the UI for the failed expectations'}"
            for e in failed_checks
        ]
        if any(e.check_name in REFUSING_CHECKS for e in failed_checks):
            tenant = result.dagster_run.tags.get("dagster/partition", "TENANT")
            lines.append(
                "Nothing was changed in the app. If this change is expected, run "
                f"`sync-pipeline sync {tenant} --allow-mass-deactivation`."
            )
        return "\n".join(lines)
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            if error is None:
                continue
            # A dg.Failure carries our message; other errors carry their innermost cause.
            while error.cause is not None and "Failure" not in error.cls_name:
                error = error.cause
            return f"{event.step_key}: {error.message.strip()}"
    return "the run failed; open it in the UI (`sync-pipeline ui`) for the details"


def _print_summary(tenant: str, run_id: str, dry_run: bool, zone: ZoneInfo) -> None:
    with db.engine().connect() as conn:
        row = conn.execute(
            db.q("runs/by_dagster_run"), {"tenant": tenant, "dagster_run_id": run_id}
        ).first()
        changes = conn.execute(db.q("runs/diff_counts"), {"run_id": row.id if row else -1}).all()
    counts = {f"{c.entity}_{c.action}": c.n for c in changes}
    verb = ("would change" if dry_run else "changed") if counts else "nothing to change"
    when = row.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if row else ""
    table = Table(title=f"{tenant}: {verb} (sync run {row.id if row else '?'}, {when})")
    table.add_column("change")
    table.add_column("count", justify="right")
    for key in sorted(counts):
        table.add_row(key.replace("_", " "), str(counts[key]))
    if not counts:
        table.add_row("nothing to change", "0")
    console.print(table)
    created, updated = counts.get("user_create", 0), counts.get("user_update", 0)
    deactivated = counts.get("user_deactivate", 0)
    console.print(
        f"users: {created} created, {updated} updated, {deactivated} deactivated"
        + (" (dry run: app unchanged)" if dry_run else "")
    )
