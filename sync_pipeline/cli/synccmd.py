"""`sync-pipeline sync TENANT`: run the sync (or test sync) job through Dagster, with progress.

The run executes in this process and is recorded in the Dagster instance, so it shows in the
UI afterwards. Progress comes from the run's own event log, polled while the job runs.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import click
import sqlalchemy as sa
from rich.table import Table

from sync_pipeline.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_REFUSED,
    console,
    err_console,
    handle_errors,
    prepare,
)
from sync_pipeline.cli.progress import APPLY_STEP, Progress, stage
from sync_pipeline.core import config, db
from sync_pipeline.graph import CredentialError, preflight
from sync_pipeline.registry import runlimits, runs, tenants

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


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
        run = _launch_prepared(tenant, dry_run, allow_mass_deactivation, full_read)
    except KeyboardInterrupt:
        err_console.print(f"interrupted before the sync of {tenant} started: nothing changed")
        raise SystemExit(EXIT_INTERRUPTED) from None
    run.execute()


def _launch_prepared(
    tenant: str, dry_run: bool, allow_mass_deactivation: bool, full_read: bool
) -> SyncRun:
    prepare()
    from sync_pipeline.cli.tenantcmd import _partitions_add
    from sync_pipeline.registry import demo

    with db.engine().connect() as conn:
        stored = tenants.get(conn, tenant)  # validates the settings before anything runs
    try:
        preflight.check(demo.serving(stored.settings))
    except CredentialError as exc:  # configuration: no run, no retry
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    _partitions_add([tenant])
    return SyncRun(stored, dry_run, allow_mass_deactivation, full_read)


class SyncRun:
    """One sync run in a worker thread, followed from the main thread, which owns Ctrl-C.

    The run executes in this process (execute_in_process) on a worker thread: Dagster's own
    interrupt handling works only on the main thread, and it would interrupt the step in the
    middle (the apply included). Here the main thread takes SIGINT: the first asks the run to
    stop through Dagster's run termination state (CANCELING), which each stage looks at when
    it starts (defs/stopping.py); the second leaves at once.
    """

    def __init__(
        self, stored: Any, dry_run: bool, allow_mass_deactivation: bool, full_read: bool
    ) -> None:

        from sync_pipeline.definitions import defs
        from sync_pipeline.defs.extract import FULL_READ_TAG

        self.tenant, self.stored, self.dry_run = stored.settings.slug, stored, dry_run
        self.tags = {
            "tenant": self.tenant,
            "trigger": "test" if dry_run else "manual",
            **({FULL_READ_TAG: "true"} if full_read else {}),
        }
        self.job = defs.resolve_job_def("test_sync" if dry_run else "sync")
        # Dagster's own log lines (ERROR and tracebacks) only with -v: failures are told below
        # in one line. CRITICAL: Dagster logs nothing at that level.
        level = "DEBUG" if _verbose() else "CRITICAL"
        self.run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": level}}}}
        if not dry_run:
            self.run_config["ops"] = {
                "app_directory": {"config": {"allow_mass_deactivation": allow_mass_deactivation}}
            }
        if not _verbose():
            logging.getLogger("urllib3").setLevel(logging.ERROR)  # retries show in metadata
        self.instance = _cli_instance()
        self.run_id = str(uuid.uuid4())  # known before the run starts, so progress can follow it
        # The run queue's one-run-per-tenant limit, which an in-process run bypasses; runs
        # whose process died are failed first, so that they never block (defs/liveness.py).
        from sync_pipeline.defs import liveness

        liveness.reap(self.instance, db.engine(), self.tenant, self.run_id)
        runlimits.refuse_if_busy(self.instance, self.tenant)
        self.outcome: dict[str, Any] = {}
        self.progress = Progress()
        self.interrupts = 0  # Ctrl-C presses, counted by the signal handler
        self.handled = 0  # presses acted on by the main loop
        self.stop_asked = False

    # -- the worker thread ------------------------------------------------------------------
    def _execute(self) -> None:
        try:
            self.outcome["result"] = self.job.execute_in_process(
                run_config=self.run_config,
                instance=self.instance,
                partition_key=self.tenant,
                run_id=self.run_id,
                raise_on_error=False,
                tags=self.tags,
            )
        except BaseException as exc:  # reported below, after progress stops
            self.outcome["error"] = exc

    # -- the main thread --------------------------------------------------------------------
    def execute(self) -> None:
        worker = threading.Thread(target=self._execute, name="sync-run")
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            worker.start()
            self._follow(worker)
            worker.join()
        finally:
            signal.signal(signal.SIGINT, previous)
        if "error" in self.outcome:
            raise self.outcome["error"]
        result = self.outcome["result"]
        if self.handled:
            self._report_interrupted(result)
            raise SystemExit(EXIT_INTERRUPTED)
        if not result.success:
            self._report_failure(result)
        _print_summary(self.tenant, self.run_id, self.dry_run, self._zone())

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # Only counted here: the main loop acts on it, outside any database call.
        self.interrupts += 1

    def _follow(self, worker: threading.Thread) -> None:
        """Print each stage as the run's event log records it, until the job thread ends."""
        import dagster as dg

        kinds = {
            dg.DagsterEventType.STEP_START,
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.ASSET_MATERIALIZATION,
            dg.DagsterEventType.STEP_FAILURE,
        }
        seen = 0
        with err_console.status("syncing…") as status:
            while True:
                alive = worker.is_alive()
                records = self.instance.all_logs(self.run_id, of_type=kinds)
                for event in records[seen:]:
                    line = self.progress.line(event)
                    if line:
                        err_console.print(line)
                seen = len(records)
                running = self.progress.running
                status.update(f"{stage(running)}…" if running else "syncing…")
                if self.stop_asked is False and self.handled:
                    self._ask_stop()  # the run did not exist yet at the first Ctrl-C
                while self.handled < self.interrupts:
                    self.handled += 1
                    self._on_interrupt(self.handled)
                if not alive:
                    return
                time.sleep(0.2)

    def _on_interrupt(self, n: int) -> None:
        if n == 1:
            self._ask_stop()
            if self.progress.running == APPLY_STEP:
                err_console.print(
                    "[yellow]Ctrl-C:[/] the apply is committing; waiting (it is one "
                    "transaction: app.* gets all of it or none). Ctrl-C again to leave now."
                )
            else:
                err_console.print(
                    f"[yellow]Ctrl-C:[/] stopping the sync of {self.tenant} at the next step "
                    f"(now: {stage(self.progress.running)}); Ctrl-C again to leave now."
                )
            return
        self._leave_now()

    def _ask_stop(self) -> None:
        run = self.instance.get_run_by_id(self.run_id)
        if run is None or run.is_finished:
            return
        self.instance.report_run_canceling(
            run, message="Ctrl-C in `sync-pipeline sync`: stopping at the next step"
        )
        self.stop_asked = True
        self.progress.stopping = True

    def _leave_now(self) -> None:
        """The second Ctrl-C: say what state the tenant is in, end the run's records, exit."""
        now = stage(self.progress.running)
        run_cmd = f"`sync-pipeline sync {self.tenant}`"
        if self.dry_run:
            state = f"{self.tenant}: leaving the test sync now ({now}); app.* is untouched"
        elif self.progress.running == APPLY_STEP:
            state = (
                f"{self.tenant}: leaving now, during the apply. It is one transaction: Postgres "
                "rolls it back when this process ends before the commit, so app.* stays as it "
                "was before this sync, never half-applied (`sync-pipeline history "
                f"{self.tenant}` shows whether it committed first). The next sync ({run_cmd}, or "
                "the schedule) marks this run failed and applies the changes again"
            )
        elif APPLY_STEP in self.progress.finished:
            state = f"{self.tenant}: leaving now; the apply had already committed"
        else:
            state = (
                f"{self.tenant}: leaving now, during {now}; app.* is unchanged (nothing of this "
                f"run was applied). The next sync ({run_cmd}, or the schedule) starts again "
                "from the last completed read of Graph"
            )
        err_console.print(f"[yellow]Ctrl-C again:[/] {state}.", soft_wrap=True)
        reason = f"left by a second Ctrl-C during {now}"
        try:
            run = self.instance.get_run_by_id(self.run_id)
            if run is not None and not run.is_finished:
                self.instance.add_run_tags(self.run_id, {"dagster/max_retries": "0"})
                self.instance.report_run_canceled(run, message=reason)
            if self.progress.running != APPLY_STEP:  # the apply holds the row: reaped later
                with db.engine().begin() as conn:
                    conn.execute(sa.text("SET LOCAL lock_timeout = '1s'"))
                    runs.end_if_running(conn, self.tenant, self.run_id, "canceled", reason)
        except Exception:  # leaving matters more; the next sync reaps what is left
            pass
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)  # the worker thread cannot be stopped any other way

    def _report_interrupted(self, result: Any) -> None:
        """After a stop: the real outcome, from sync.runs (and so app.*)."""
        with db.engine().begin() as conn:
            row = conn.execute(
                db.q("runs/by_dagster_run"), {"tenant": self.tenant, "dagster_run_id": self.run_id}
            ).first()
            applied = row is not None and row.status == "success" and not self.dry_run
            if not applied:
                reason = "stopped by Ctrl-C before the apply"
                runs.end_if_running(conn, self.tenant, self.run_id, "canceled", reason)
        if applied:
            _print_summary(self.tenant, self.run_id, self.dry_run, self._zone())
            err_console.print(
                f"[yellow]interrupted:[/] the apply had started and committed: the sync of "
                f"{self.tenant} completed (sync run {row.id}).",
                soft_wrap=True,
            )
            return
        if not result.success and result.dagster_run.status.value != "CANCELED":
            self._print_failure(result)
        last = stage(self.progress.finished[-1]) if self.progress.finished else "the start"
        what = "test sync" if self.dry_run else "sync"
        err_console.print(
            f"[yellow]interrupted:[/] the {what} of {self.tenant} stopped after {last}, before "
            f"the apply: app.* is unchanged. Run `sync-pipeline sync {self.tenant}` to sync.",
            soft_wrap=True,
        )

    def _report_failure(self, result: Any) -> None:
        message = self._print_failure(result)
        refused = "--allow-mass-deactivation" in message
        raise SystemExit(EXIT_REFUSED if refused else EXIT_FAILED)

    def _print_failure(self, result: Any) -> str:
        step, message = _failure_message(result)
        where = f" in {stage(step)}" if step else ""
        err_console.print(
            f"[bold red]error:[/] sync of {self.tenant} failed{where}: {message} "
            f"[dim](Dagster run {self.run_id[:8]}; `sync-pipeline -v sync {self.tenant}` or the "
            "UI shows the details)[/]",
            soft_wrap=True,
        )
        return message

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.stored.settings.timezone)


def _cli_instance() -> Any:
    """The Dagster instance of $DAGSTER_HOME, without capturing the steps' stdout/stderr.

    The default compute log manager tees the process's file descriptors through a child
    process while steps run: in a terminal that garbles the progress display (the cursor
    moves arrive late, through the pipe), and the child, in the terminal's process group,
    prints a KeyboardInterrupt traceback of its own on Ctrl-C. Our steps log through
    context.log, which the event log keeps anyway; runs from the UI keep their captured logs.
    """
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(
        config.prepared_dagster_home(),
        overrides={
            "compute_logs": {
                "module": "dagster._core.storage.noop_compute_log_manager",
                "class": "NoOpComputeLogManager",
            }
        },
    )
    return dg.DagsterInstance.from_ref(ref)


def _verbose() -> bool:
    return bool(getattr(console, "verbose", False))


SAFETY_CHECK = "sync_diff_within_safety_limit"
# Checks that refuse a sync for being too big a change; --allow-mass-deactivation lifts them.
REFUSING_CHECKS = (SAFETY_CHECK, "snapshot_users_drift")


def _failure_message(result: Any) -> tuple[str | None, str]:
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
        return None, "\n".join(lines)
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            if error is None:
                continue
            # A dg.Failure carries our message; other errors carry their innermost cause.
            while error.cause is not None and "Failure" not in error.cls_name:
                error = error.cause
            text = error.message.strip()
            # Dagster's message starts with the exception's class: the operator needs the text.
            prefix = f"{error.cls_name}: "
            text = text.split(prefix, 1)[1] if prefix in text else text.split(": ", 1)[-1]
            return event.step_key, " ".join(text.split())
    return None, "the run failed; open it in the UI (`sync-pipeline ui`) for the details"


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
