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


def _step_config(run_config: Mapping[str, Any] | None, step: str) -> Mapping[str, Any]:
    ops = (run_config or {}).get("ops")
    found = ops.get(step) if isinstance(ops, Mapping) else None
    config = found.get("config") if isinstance(found, Mapping) else None
    return config if isinstance(config, Mapping) else {}


def person(run_config: Mapping[str, Any] | None) -> str | None:
    """The one person a run syncs (graph_directory's `user`: the CLI's `sync --user`, or the
    UI's launchpad), or None for a sync of the whole tenant."""
    who = _step_config(run_config, "graph_directory").get("user")
    return (who.strip() or None) if isinstance(who, str) else None


def mass_deactivation_refusal(
    run_config: Mapping[str, Any] | None, *, launched_in_process: bool, allowed_from_ui: bool
) -> str | None:
    """Why a run's allow_mass_deactivation is refused, or None (not asked, or honoured).

    The CLI executes its run in its own process (`launched_in_process`: the run has no
    remote origin); a run with one came through a code location, from the UI, its GraphQL
    API or the daemon, which authenticate nobody. Such a run's request is honoured only when
    the tenant's settings say so (allow_mass_deactivation_from_ui)."""
    if not asks_mass_deactivation(run_config) or launched_in_process or allowed_from_ui:
        return None
    return (
        "allow_mass_deactivation was asked in the run config of a run not launched from "
        "`sync-pipeline sync` (the UI authenticates nobody), and the tenant's "
        "allow_mass_deactivation_from_ui is off: refused, the safety limit holds. Run "
        "`sync-pipeline sync TENANT --allow-mass-deactivation`, or set "
        "allow_mass_deactivation_from_ui: true for the tenant"
    )


def asks_mass_deactivation(run_config: Mapping[str, Any] | None) -> bool:
    """Whether a run's config asks app_directory's allow_mass_deactivation."""
    return bool(_step_config(run_config, "app_directory").get("allow_mass_deactivation", False))
