"""One sync run executed in this process for `sync`, followed from the main thread: its
progress lines, Ctrl-C (stop at the next step, or leave at once), and its outcome.

The run executes in this process and is recorded in the Dagster instance, so it shows in the
UI afterwards. Progress comes from the run's own events, handed over by the instance as it
stores them.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import sys
import threading
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from sync_pipeline.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    err_console,
    options,
)
from sync_pipeline.cli.progress import APPLY_STEP, Progress, stage
from sync_pipeline.cli.syncoutput import (
    failure_code,
    failure_message,
    print_person,
    print_summary,
)
from sync_pipeline.core import config, db
from sync_pipeline.registry import runlimits, runs
from sync_pipeline.registry.tenants import StoredTenant

POOL_RECYCLE_SECONDS = 3600
POOL_OVERFLOW = 4  # the run's thread, the main thread's stop requests, a check's threads
POLL_SECONDS = 0.2  # how often the main thread looks at Ctrl-C and the run's thread


def cli_instance() -> Any:
    """The Dagster instance of $DAGSTER_HOME (and its storage URL), one per process."""
    return _instance(config.prepared_dagster_home(), config.dagster_pg_url())


@functools.cache
def _instance(dagster_home: str, storage_url: str | None) -> Any:
    """The Dagster instance of `dagster_home` for `sync`, without
    capturing the steps' stdout/stderr, holding its storage connections.

    The default compute log manager tees the process's file descriptors through a child
    process while steps run: in a terminal that garbles the progress display (the cursor
    moves arrive late, through the pipe), and the child, in the terminal's process group,
    prints a KeyboardInterrupt traceback of its own on Ctrl-C. Our steps log through
    context.log, which the event log keeps anyway; runs from the UI keep their captured logs.

    dagster-postgres opens a new connection for every statement by default (NullPool: a
    long-lived process accumulates none), ~340 in a small tenant's run, each a TCP connect,
    authentication and backend start (~2.5 s of the run). A sync is one short process, so it
    keeps them as Dagster's webserver does (`optimize_for_webserver`: one pooled connection
    per storage, more only while threads overlap), with no statement timeout: a run's own
    writes must not be cut short.
    """
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(
        dagster_home,
        overrides={
            "compute_logs": {
                "module": "dagster._core.storage.noop_compute_log_manager",
                "class": "NoOpComputeLogManager",
            }
        },
    )
    instance = dg.DagsterInstance.from_ref(ref)
    instance.optimize_for_webserver(
        statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=POOL_OVERFLOW
    )
    return instance


class SyncRun:
    """One sync run in a worker thread, followed from the main thread, which owns Ctrl-C.

    The run executes in this process (execute_in_process) on a worker thread: Dagster's own
    interrupt handling works only on the main thread, and it would interrupt the step in the
    middle (the apply included). Here the main thread takes SIGINT: the first asks the run to
    stop through Dagster's run termination state (CANCELING), which each stage looks at when
    it starts (defs/stopping.py); the second leaves at once.
    """

    def __init__(
        self,
        stored: StoredTenant,
        dry_run: bool,
        allow_mass_deactivation: bool,
        full_read: bool,
        user: str | None = None,
    ) -> None:
        from sync_pipeline.definitions import defs
        from sync_pipeline.defs.extract import FULL_READ_TAG, PERSON_TAG

        self.tenant, self.stored, self.dry_run = stored.settings.slug, stored, dry_run
        self.tags = {
            "tenant": self.tenant,
            "trigger": "test" if dry_run else "manual",
            **({FULL_READ_TAG: "true"} if full_read else {}),
            **({PERSON_TAG: user} if user else {}),
        }
        self.user = user
        self.job = defs.resolve_job_def("test_sync" if dry_run else "sync")
        # Dagster's own log lines (ERROR and tracebacks) only with -v: failures are told below
        # in one line. CRITICAL: Dagster logs nothing at that level.
        level = "DEBUG" if options.verbose else "CRITICAL"
        self.run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": level}}}}
        self.run_config["ops"] = {}
        if not dry_run:
            self.run_config["ops"]["app_directory"] = {
                "config": {"allow_mass_deactivation": allow_mass_deactivation}
            }
        if user:
            self.run_config["ops"]["graph_directory"] = {"config": {"user": user}}
        if not options.verbose:
            logging.getLogger("urllib3").setLevel(logging.ERROR)  # retries show in metadata
        self.instance = cli_instance()
        self.run_id = str(uuid.uuid4())  # known before the run starts, so progress can follow it
        # The run queue's one-run-per-tenant limit, which an in-process run bypasses; runs
        # whose process died are failed first, so that they never block (defs/liveness.py).
        from sync_pipeline.defs import liveness

        liveness.reap(self.instance, db.engine(), self.tenant, self.run_id)
        runlimits.refuse_if_busy(self.instance, self.tenant)
        self.outcome: dict[str, Any] = {}
        self.progress = Progress()
        import dagster as dg

        self._kinds = {
            dg.DagsterEventType.STEP_START,
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.ASSET_MATERIALIZATION,
            dg.DagsterEventType.STEP_FAILURE,
        }
        self._events: queue.Queue[Any] = queue.Queue()
        self.instance.add_event_listener(self.run_id, self._on_event)
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
        print_summary(self.tenant, self.run_id, self.dry_run, self._zone())
        if self.user:
            print_person(self.stored.settings, self.run_id, result)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # Only counted here: the main loop acts on it, outside any database call.
        self.interrupts += 1

    def _follow(self, worker: threading.Thread) -> None:
        """Print each stage as the run's event log records it, until the job thread ends.

        The events come from the instance in this process as it stores them (its event
        listener, called on the run's thread), not by reading the run's log back: polling
        `all_logs` re-read the whole log, a query and a connection every 0.2 s."""
        with err_console.status("syncing…") as status:
            while True:
                alive = worker.is_alive()
                while True:
                    try:
                        event = self._events.get_nowait()
                    except queue.Empty:
                        break
                    line = self.progress.line(event)
                    if line:
                        err_console.print(line)
                running = self.progress.running
                status.update(f"{stage(running)}…" if running else "syncing…")
                if self.stop_asked is False and self.handled:
                    self._ask_stop()  # the run did not exist yet at the first Ctrl-C
                while self.handled < self.interrupts:
                    self.handled += 1
                    self._on_interrupt(self.handled)
                if not alive:
                    return
                worker.join(POLL_SECONDS)

    def _on_event(self, event: Any) -> None:
        """The instance's event listener (the run's thread): keep what progress shows."""
        dagster_event = event.dagster_event
        if dagster_event is not None and dagster_event.event_type in self._kinds:
            self._events.put(event)

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
                    runs.end_if_running_without_waiting(
                        conn, self.tenant, self.run_id, "canceled", reason
                    )
        except Exception:  # leaving matters more; the next sync reaps what is left
            pass
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)  # the worker thread cannot be stopped any other way

    def _report_interrupted(self, result: Any) -> None:
        """After a stop: the real outcome, from sync.runs (and so app.*)."""
        with db.engine().begin() as conn:
            row = runs.by_dagster_run(conn, self.tenant, self.run_id)
            applied = row is not None and row.status == "success" and not self.dry_run
            if not applied:
                reason = "stopped by Ctrl-C before the apply"
                runs.end_if_running(conn, self.tenant, self.run_id, "canceled", reason)
        if applied and row is not None:
            print_summary(self.tenant, self.run_id, self.dry_run, self._zone())
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
        code = failure_code(result)
        if code == "person_not_found":  # bad input: who to sync
            raise SystemExit(EXIT_BAD_INPUT)
        if code == "tenant_busy":  # another run of the tenant started in the same instant
            raise SystemExit(runlimits.EXIT_BUSY)
        refused = "--allow-mass-deactivation" in message
        raise SystemExit(EXIT_REFUSED if refused else EXIT_FAILED)

    def _print_failure(self, result: Any) -> str:
        step, message = failure_message(result)
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
