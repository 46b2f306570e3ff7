"""The production topology's schedule, started as if it had been running for a while: shared by
the topology test and the fleet benchmark (docs/operations.md says it uses Dagster internals)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

WORKSPACE = Path(__file__).resolve().parents[2] / "deploy" / "workspace.yaml"
LOCATION = "sync_pipeline"
SCHEDULE = "daily_tenant_syncs"
TICK = dt.timedelta(minutes=5)  # the schedule's cron: */5 * * * *


def start_schedule_since(instance: Any, since: dt.datetime) -> None:
    """Store the schedule's state as running since `since`, under the origin the daemon sees
    (the same workspace file, so the same gRPC origin); the daemon then catches up the tick
    after `since`."""
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        ScheduleInstigatorData,
    )
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    target = WorkspaceFileTarget(paths=[str(WORKSPACE)])
    with WorkspaceProcessContext(instance, target) as context:
        location = context.create_request_context().get_code_location(LOCATION)
        (repository,) = location.get_repositories().values()
        schedule = repository.get_schedule(SCHEDULE)
        data = ScheduleInstigatorData(schedule.cron_schedule, start_timestamp=since.timestamp())
        instance.add_instigator_state(
            InstigatorState(
                schedule.get_remote_origin(),
                InstigatorType.SCHEDULE,
                InstigatorStatus.RUNNING,
                data,
            )
        )
