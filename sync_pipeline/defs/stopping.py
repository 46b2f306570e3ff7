"""Stopping a run at a step boundary, when asked (Ctrl-C in `sync-pipeline sync`, or the UI).

The request is Dagster's own: the run's status CANCELING (`instance.report_run_canceling`),
which the CLI sets on the first Ctrl-C and the UI's Terminate sets too. The in-process
executor does not look at it between steps, so each stage's asset looks at its start
(`stop_if_asked`), and the extraction between the pages it writes: the step then raises
Dagster's DagsterExecutionInterruptedError, which ends the run CANCELED. The apply, once
started, is never stopped from here: it is one transaction and commits or rolls back whole.

Test hook: SYNC_PIPELINE_TEST_PAUSE="<stage>:<seconds>" (stage: extract, transform, diff or
apply) sleeps that long inside the stage's work (the apply: inside its transaction), so a test
can send SIGINT while a given stage runs. Never set it elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError

from sync_pipeline.core import config

CHECK_EVERY_SECONDS = 0.5


def stop_requested(context: dg.AssetExecutionContext) -> bool:
    run = context.instance.get_run_by_id(context.run.run_id)
    return run is not None and run.status == dg.DagsterRunStatus.CANCELING


def stop_if_asked(context: dg.AssetExecutionContext) -> None:
    """At a step's start: end the run here when it was asked to stop."""
    if stop_requested(context):
        context.log.info(f"stop requested: {context.op.name} and later steps do not run")
        raise DagsterExecutionInterruptedError()


def stop_checker(context: dg.AssetExecutionContext) -> Callable[[str], None]:
    """A callback for long work (the extraction's events): stops it when asked, looking at
    most every CHECK_EVERY_SECONDS (a query each time)."""
    last = [0.0]  # the first event looks at once

    def check(_: str) -> None:
        now = time.monotonic()
        if now - last[0] >= CHECK_EVERY_SECONDS:
            last[0] = now
            stop_if_asked(context)

    return check


def test_pause(stage: str) -> None:
    """The test hook (module doc): pause inside `stage` when SYNC_PIPELINE_TEST_PAUSE says so."""
    value = config.test_pause()
    name, _, seconds = value.partition(":")
    if name == stage:
        time.sleep(float(seconds or 5))
