"""Real sync or test sync: what a run of each kind may do to app.*.

A real sync applies the diff. A test sync (a dry run) computes the same diff and reports it,
and never touches app.*: its sync.runs row is marked dry_run (so it neither counts toward a
quarantine nor lifts one), and the safety limits only warn in it, since nothing it finds is
applied. Which kind a run is follows from the job that launched it: the test sync's job is
the only dry one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SYNC_JOB = "sync"
TEST_SYNC_JOB = "test_sync"
DRY_RUN_JOBS = frozenset({TEST_SYNC_JOB})


def is_dry_run(job_name: str) -> bool:
    """Whether a run of the job `job_name` is a dry run (plans and reports, never applies)."""
    return job_name in DRY_RUN_JOBS


def guards_the_load(*, dry_run: bool, allow_mass_deactivation: bool) -> bool:
    """Whether big changes (deactivations over the safety limit, a drift over the error
    threshold) block the run: not in a dry run, where nothing is applied, nor when the
    operator allowed a mass deactivation for this run."""
    return not dry_run and not allow_mass_deactivation


def counts_toward_quarantine(job_name: str) -> bool:
    """Whether a failed run of `job_name` counts toward the tenant's quarantine: real syncs
    only."""
    return not is_dry_run(job_name)


def allows_mass_deactivation(run_config: Mapping[str, Any] | None) -> bool:
    """Whether a run's config sets app_directory's allow_mass_deactivation (the CLI's
    `--allow-mass-deactivation`, or the UI's launchpad)."""
    ops = (run_config or {}).get("ops")
    step = ops.get("app_directory") if isinstance(ops, Mapping) else None
    config = step.get("config") if isinstance(step, Mapping) else None
    return isinstance(config, Mapping) and bool(config.get("allow_mass_deactivation", False))
