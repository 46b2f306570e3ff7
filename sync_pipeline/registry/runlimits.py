"""One run per tenant, for CLI syncs and the schedule too.

Runs launched from the UI or the schedule go through the run queue, whose tag limit
(dagster.yaml: `tenant`, one at a time) holds them while another run of the tenant is in
progress. `sync-pipeline sync` executes in its own process and bypasses the queue, daemon or
not, so it asks the instance first and refuses while the tenant has a run queued or going.
The schedule asks too (`busy_tenants`): a sync due while the tenant has a run queued or
going is skipped, not queued behind it. Two starts in the same instant (two CLI syncs, a
CLI sync beside a queued run) both pass those checks: the later run finds the earlier at its
first step (`earlier_run`, defs/extract.py) and stops before reading anything (exit 4 from
the CLI), so syncs of a tenant never interleave.
"""

from __future__ import annotations

from typing import Any

import click
import dagster as dg

from sync_pipeline.registry.schedule import SYNC_KIND_TAG

# Every status before a run's end: queued (held by the tag limit) counts, as it will run.
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
EXIT_BUSY = 4  # nothing ran: another run of the tenant is in progress; try again later


class TenantBusy(click.ClickException):
    """Another run of the tenant is queued or in progress; this sync did not start."""

    exit_code = EXIT_BUSY


def run_in_progress(instance: dg.DagsterInstance, tenant: str) -> dg.DagsterRun | None:
    """A run of `tenant` that is queued or going, or None. Runs from the schedule and the
    CLI carry the `tenant` tag; a materialisation started in the UI carries only the
    partition tag, so both are asked."""
    for tags in ({"tenant": tenant}, {"dagster/partition": tenant}):
        found = instance.get_runs(dg.RunsFilter(tags=tags, statuses=IN_PROGRESS), limit=1)
        if found:
            return found[0]
    return None


def refuse_if_busy(instance: dg.DagsterInstance, tenant: str) -> None:
    """Raise TenantBusy when a run of `tenant` is in progress (run_in_progress)."""
    run = run_in_progress(instance, tenant)
    if run is None:
        return
    trigger = run.tags.get("trigger", "the UI")
    raise TenantBusy(
        f"tenant {tenant} already has a run in progress: Dagster run {run.run_id} "
        f"({run.job_name}, {run.status.value.lower()}, from {trigger}); one run per "
        "tenant at a time. Wait for it to end, or cancel it in the UI "
        "(`sync-pipeline ui`), then sync again."
    )


def earlier_run(
    instance: dg.DagsterInstance, tenant: str, own_run_id: str, jobs: tuple[str, ...]
) -> dg.DagsterRun | None:
    """The tenant's run of one of `jobs`, other than `own_run_id`, that is queued or going
    and was created before it (the smaller run id breaking a tie), or None. Two runs of a
    tenant started together (two CLI syncs, a CLI sync beside the daemon's) both pass the
    check a CLI makes before it starts; the later one finds the earlier here, at its first
    step, and stops before reading anything."""
    records: dict[str, Any] = {}
    for tags in ({"tenant": tenant}, {"dagster/partition": tenant}):
        for record in instance.get_run_records(dg.RunsFilter(tags=tags, statuses=IN_PROGRESS)):
            records[record.dagster_run.run_id] = record
    own = records.get(own_run_id)
    mine = (own.create_timestamp.timestamp(), own_run_id) if own is not None else None
    earlier = [
        ((r.create_timestamp.timestamp(), rid), r.dagster_run)
        for rid, r in records.items()
        if rid != own_run_id
        and r.dagster_run.job_name in jobs
        and (mine is None or (r.create_timestamp.timestamp(), rid) < mine)
    ]
    return min(earlier, key=lambda pair: pair[0])[1] if earlier else None


def tenant_of(run: dg.DagsterRun) -> str | None:
    """The tenant a run is for: its `tenant` tag, else its partition (a UI materialisation)."""
    return run.tags.get("tenant") or run.tags.get("dagster/partition")


def describe(run: dg.DagsterRun) -> str:
    """A run in a few words, for a tick's log: id, job, status, what started it."""
    kind = run.tags.get(SYNC_KIND_TAG) or run.tags.get("trigger", "the UI")
    return f"run {run.run_id[:8]}: {run.job_name}, {run.status.value.lower()}, {kind}"


def busy_tenants(instance: dg.DagsterInstance) -> dict[str, str]:
    """{tenant: the run it has queued or going, described}, from one query: runs in progress
    are few (the queue caps the running ones, and the schedule queues none behind them)."""
    busy: dict[str, str] = {}
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS)):
        tenant = tenant_of(run)
        if tenant and tenant not in busy:
            busy[tenant] = describe(run)
    return busy
