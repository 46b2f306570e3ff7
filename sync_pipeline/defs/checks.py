"""Asset checks: the great-expectations suites of `sync_pipeline.checks.expectations`, per tenant.

Every check but the advisory ones (`snapshot_odd_rows`, `sync_diff_nothing_held_long`,
`graph_users_fresh`) is `blocking`: when it fails with ERROR severity (an expectation that
guards the engine's invariants or a whole-run risk), Dagster skips everything downstream of
its asset in the run, so `app_directory` never applies bad data. Advisory findings fail with
WARN severity and block nothing; the advisory checks are not even marked blocking.
docs/checks.md sorts every expectation. The UI shows, beside each asset, which expectation
failed and a few sample rows (ids, addresses, names; never secrets). `graph_users_fresh` is
no suite: it compares the last complete read's age with the tenant's stale_after_hours
(defs/staleness.py).

The checks run as three steps, one per stage (staging, snapshot, diff): each step is a
`multi_asset_check`, and each of its checks still sits beside its own asset with its own
result. A step of its own per check cost ~60 ms of Dagster bookkeeping each (events written
to the instance), a fifth of what the checks themselves take on a 100k-user tenant.
"""

import datetime as dt
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import sqlalchemy as sa

from sync_pipeline.checks import expectations, scope
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.defs.load import mass_deactivation_allowed, sync_diff
from sync_pipeline.defs.partitions import tenant_partitions
from sync_pipeline.defs.resources import Database
from sync_pipeline.defs.staleness import CHECK_DESCRIPTION, CHECK_NAME, freshness_result
from sync_pipeline.defs.transform import SNAPSHOT_GROUPS, SNAPSHOT_MEMBERSHIPS, SNAPSHOT_USERS
from sync_pipeline.load import runmode
from sync_pipeline.registry import staleness

# One result per tenant partition needs `partitions_def` on the check, which Dagster 1.13 marks
# as preview; silence that one warning rather than every definitions load printing it.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)


class ExpectationsWarmUp(dg.ConfigurableResource):
    """Starts importing great-expectations (and building every suite) in the background when
    a run that holds checks initialises its resources: with the in-process executor that is
    the run's start, so the ~2 s import overlaps the extraction's waits on Graph instead of
    delaying the first check. Nothing to configure; the checks carry it themselves."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        expectations.warm_up()


# One instance for every check: Dagster requires one definition per resource key.
WARM_UP = ExpectationsWarmUp()
# Every check's step names the warm-up among its resources (unused in its body) so that it
# is initialised at the run's start; it comes with the checks, not from Definitions.
STEP: dict[str, Any] = {"can_subset": True, "resource_defs": {"gx_warm_up": WARM_UP}}

# By key, not by definition: the extraction may materialise them from one multi-asset.
GRAPH_USERS = dg.AssetKey("graph_users")
GRAPH_GROUPS = dg.AssetKey("graph_groups")
GRAPH_GROUP_MEMBERS = dg.AssetKey("graph_group_members")


def _table(outcome: expectations.Outcome) -> str:
    """The failed expectations and their sample rows as markdown for the UI."""
    lines = [
        "| severity | expectation | meaning | bad rows | sample |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for f in outcome.failures:
        sample = "<br>".join(", ".join(f"{k}={v}" for k, v in row.items()) for row in f.sample) or (
            "" if f.observed is None else f"observed: {f.observed}"
        )
        count = "" if f.unexpected_count is None else str(f.unexpected_count)
        sample = sample.replace("|", "\\|")
        lines.append(f"| {f.severity} | `{f.expectation}` | {f.description} | {count} | {sample} |")
    return "\n".join(lines)


def _guarding(context: dg.AssetCheckExecutionContext, settings: TenantSettings) -> bool:
    """Whether big changes block this run (`runmode.guards_the_load`), from its job and
    app_directory's allow_mass_deactivation in its run config, where honoured
    (defs/load.mass_deactivation_allowed)."""
    allowed, _ = mass_deactivation_allowed(context, settings)
    return runmode.guards_the_load(
        dry_run=runmode.is_dry_run(context.job_def.name), allow_mass_deactivation=allowed
    )


def check_result(
    outcome: expectations.Outcome, tenant: str, key: dg.AssetCheckKey
) -> dg.AssetCheckResult:
    """An outcome as the asset check's result: ERROR blocks, WARN advises."""
    severity = (
        dg.AssetCheckSeverity.ERROR
        if outcome.severity == expectations.ERROR
        else dg.AssetCheckSeverity.WARN
    )
    metadata: dict[str, Any] = {
        "rows_checked": outcome.rows,
        "expectations": outcome.evaluated,
        "failed": len(outcome.failures),
        "seconds": outcome.seconds,
        **{k: v for k, v in outcome.facts.items() if v is not None},
    }
    if outcome.failures and outcome.facts.get("over_safety_limit"):
        metadata["failed_expectations"] = dg.MetadataValue.md(_table(outcome))
        description = str(outcome.facts["safety"])  # the load's own message and way out
    elif outcome.failures:
        metadata["failed_expectations"] = dg.MetadataValue.md(_table(outcome))
        worst = outcome.failures[0]
        description = (
            f"tenant {tenant}: {len(outcome.failures)} expectation(s) failed, first: "
            f"{worst.description} ({worst.expectation}). See failed_expectations for sample "
            "rows; fix the data in Entra ID or the tenant's settings, then sync again."
        )
    else:
        description = f"tenant {tenant}: all {outcome.evaluated} expectations passed"
    return dg.AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=outcome.passed,
        severity=severity,
        description=description,
        metadata=metadata,
    )


# (context, database, connection, tenant) -> the suite's outcome, or a result when there is
# nothing to check yet
Evaluate = Callable[
    [dg.AssetCheckExecutionContext, Database, sa.Connection, str],
    expectations.Outcome | dg.AssetCheckResult,
]


class Check:
    """One check: its spec (beside its asset, blocking, per tenant partition) and how it
    evaluates on a connection."""

    def __init__(
        self,
        name: str,
        asset: dg.AssetKey | dg.AssetsDefinition,
        evaluate: Evaluate,
        description: str,
        additional_deps: tuple[dg.AssetKey, ...] = (),
        *,
        blocking: bool = True,
    ) -> None:
        self.spec = dg.AssetCheckSpec(
            name,
            asset=asset,
            description=description,
            additional_deps=list(additional_deps),
            blocking=blocking,
            partitions_def=tenant_partitions,
        )
        self.evaluate = evaluate


def _evaluate(
    check: Check, context: dg.AssetCheckExecutionContext, database: Database, tenant: str
) -> dg.AssetCheckResult:
    started = time.monotonic()
    with database.engine().connect() as conn:
        outcome = check.evaluate(context, database, conn, tenant)
    if isinstance(outcome, dg.AssetCheckResult):  # nothing to check yet
        return outcome
    # the whole check (query, frame, GX) beside GX's own `seconds`: both plot over runs
    outcome.facts["check_seconds"] = round(time.monotonic() - started, 3)
    return check_result(outcome, tenant, check.spec.key)


def _run(
    context: dg.AssetCheckExecutionContext, database: Database, checks: list[Check]
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of one step, all at once, each on a connection of its own: while
    Postgres scans the membership list for one, this process validates another's frame (on
    two cores the snapshot step takes its slowest check's time, not the sum). GX itself
    validates one frame at a time. Results come in the checks' order."""
    tenant = context.partition_key
    selected = [c for c in checks if c.spec.key in context.selected_asset_check_keys]
    with ThreadPoolExecutor(max_workers=max(1, len(selected)), thread_name_prefix="check") as pool:
        futures = [pool.submit(_evaluate, c, context, database, tenant) for c in selected]
        for future in futures:
            yield future.result()


def _no_diff_yet(check_name: str, tenant: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=sync_diff.key,
        check_name=check_name,
        passed=True,
        description=f"tenant {tenant}: no diff computed yet",
    )


def _on_diff(name: str, check: Callable[..., expectations.Outcome]) -> Evaluate:
    """A check of this run's diff: `check(context, database, conn, tenant, run_id)`, once a
    diff exists (else a pass saying there is none yet)."""

    def evaluate(
        ctx: dg.AssetCheckExecutionContext, database: Database, conn: sa.Connection, tenant: str
    ) -> expectations.Outcome | dg.AssetCheckResult:
        run_id = expectations.diff_run_id(conn, tenant, ctx.run.run_id)
        if run_id is None:
            return _no_diff_yet(name, tenant)
        return check(ctx, database, conn, tenant, run_id)

    return evaluate


def _safety(
    ctx: dg.AssetCheckExecutionContext,
    database: Database,
    conn: sa.Connection,
    tenant: str,
    run_id: int,
) -> expectations.Outcome:
    settings = database.tenant_settings(tenant)
    return expectations.check_diff_safety(conn, settings, run_id, guard=_guarding(ctx, settings))


def _drift(
    ctx: dg.AssetCheckExecutionContext, settings: TenantSettings, conn: sa.Connection
) -> expectations.Outcome:
    return expectations.check_drift(conn, settings, guard=_guarding(ctx, settings))


_diff_safety = _on_diff(
    "sync_diff_within_safety_limit",
    lambda ctx, database, conn, tenant, run_id: _safety(ctx, database, conn, tenant, run_id),
)
_diff_fields = _on_diff(
    "sync_diff_keeps_addresses_and_names",
    lambda ctx, database, conn, tenant, run_id: expectations.check_diff_fields(
        conn, tenant, run_id
    ),
)
_diff_held = _on_diff(
    "sync_diff_nothing_held_long",
    lambda ctx, database, conn, tenant, run_id: expectations.check_diff_held(conn, tenant, run_id),
)


def _scoped(check: Callable[..., expectations.Outcome], name: str, stage: str) -> Evaluate:
    """A check of (conn, tenant, scope) on the rows that changed, or whole when due
    (checks/scope.py); a whole pass that found nothing wrong is recorded."""

    def evaluate(
        ctx: dg.AssetCheckExecutionContext, database: Database, conn: sa.Connection, tenant: str
    ) -> expectations.Outcome:
        extent = scope.decide(conn, database.tenant_settings(tenant), name, stage)
        outcome = check(conn, tenant, extent)
        scope.record(conn, tenant, extent, outcome.passed)
        return outcome

    return evaluate


def _scoped_settings(check: Callable[..., expectations.Outcome], name: str) -> Evaluate:
    """_scoped, for a snapshot check of (conn, settings, scope)."""

    def evaluate(
        ctx: dg.AssetCheckExecutionContext, database: Database, conn: sa.Connection, tenant: str
    ) -> expectations.Outcome:
        settings = database.tenant_settings(tenant)
        extent = scope.decide(conn, settings, name, "snapshot")
        outcome = check(conn, settings, extent)
        scope.record(conn, tenant, extent, outcome.passed)
        return outcome

    return evaluate


def _fresh(
    ctx: dg.AssetCheckExecutionContext, database: Database, conn: sa.Connection, tenant: str
) -> dg.AssetCheckResult:
    """The freshness check (defs/staleness.py), as of now."""
    now = dt.datetime.now(dt.UTC)
    return freshness_result(staleness.of_tenant(conn, database.tenant_settings(tenant), now))


STAGING_CHECKS = [
    Check(
        "staging_users_valid",
        GRAPH_USERS,
        _scoped(expectations.check_staging_users, "staging_users_valid", "staging"),
        "Staged users: ids present and unique, as many as the extraction counted, "
        "userPrincipalName and accountEnabled present (a malformed UPN only warns).",
    ),
    Check(
        "staging_groups_valid",
        GRAPH_GROUPS,
        lambda ctx, db, conn, tenant: expectations.check_staging_groups(conn, tenant),
        "Staged groups: ids present and unique, as many as the extraction counted.",
    ),
    Check(
        "staging_members_valid",
        GRAPH_GROUP_MEMBERS,
        _scoped(expectations.check_staging_members, "staging_members_valid", "staging"),
        "Staged memberships: every user or group member was staged, no members of unstaged "
        "groups, as many as the extraction counted; members of a type we do not know (not a "
        "user, group, contact, device or service principal) only warn.",
        # it reads staging.users as well, so it must wait for graph_users
        additional_deps=(GRAPH_USERS,),
    ),
    Check(CHECK_NAME, GRAPH_USERS, _fresh, CHECK_DESCRIPTION, blocking=False),
]
SNAPSHOT_CHECKS = [
    Check(
        "snapshot_users_valid",
        SNAPSHOT_USERS,
        _scoped_settings(expectations.check_snapshot_users, "snapshot_users_valid"),
        "Imported users: an address that is present, well-formed, unique (case, Unicode width "
        "and spaces ignored) and not denied; managers are imported users, with no cycles.",
    ),
    Check(
        "snapshot_users_drift",
        SNAPSHOT_USERS,
        lambda ctx, db, conn, tenant: _drift(ctx, db.tenant_settings(tenant), conn),
        "Imported users against the last successful sync: WARN beyond drift_warn_percent "
        "(default 10), ERROR (blocking) beyond drift_error_percent (default 30); only WARN in "
        "a test sync or when the operator allowed a mass deactivation.",
    ),
    Check(
        "snapshot_groups_valid",
        SNAPSHOT_GROUPS,
        lambda ctx, db, conn, tenant: expectations.check_snapshot_groups(conn, tenant),
        "Imported groups: unique ids, no empty or blank names or mapping targets.",
    ),
    Check(
        "snapshot_odd_rows",
        SNAPSHOT_USERS,
        lambda ctx, db, conn, tenant: expectations.check_snapshot_odd_rows(conn, tenant),
        "Advisory (WARN, never blocks): the Graph rows the transform left out or repaired "
        "instead of stopping the sync, counted per reason: users left out as duplicate_email "
        "or no_email, manager links cut to break a manager cycle, groups with a blank name, "
        "groups nested in a cycle.",
        additional_deps=(SNAPSHOT_GROUPS,),
        blocking=False,
    ),
    Check(
        "snapshot_memberships_valid",
        SNAPSHOT_MEMBERSHIPS,
        _scoped(expectations.check_snapshot_memberships, "snapshot_memberships_valid", "snapshot"),
        "Memberships point at imported snapshot groups and users.",
    ),
]
DIFF_CHECKS = [
    Check(
        "sync_diff_within_safety_limit",
        sync_diff,
        _diff_safety,
        "Deactivations within the tenant's safety limit (the load's numbers). Blocking in a "
        "sync; WARN in a test sync or when the operator allowed a mass deactivation.",
    ),
    Check(
        "sync_diff_keeps_addresses_and_names",
        sync_diff,
        _diff_fields,
        "No update, adoption, reactivation or rename blanks a user's address or name or a "
        "group's name.",
    ),
    Check(
        "sync_diff_nothing_held_long",
        sync_diff,
        _diff_held,
        "Advisory (WARN, never blocks): the deactivations, group removals and reactivations "
        "the sync holds for a person's decision (`sync-pipeline held TENANT`); red while any "
        "has waited for more than a day.",
        blocking=False,
    ),
]


@dg.multi_asset_check(specs=[c.spec for c in STAGING_CHECKS], **STEP)
def staging_checks(
    context: dg.AssetCheckExecutionContext, database: Database, gx_warm_up: ExpectationsWarmUp
) -> Iterator[dg.AssetCheckResult]:
    """The staging suites: users, groups and memberships as the extraction staged them, and
    the freshness of the tenant's last complete read."""
    yield from _run(context, database, STAGING_CHECKS)


@dg.multi_asset_check(specs=[c.spec for c in SNAPSHOT_CHECKS], **STEP)
def snapshot_checks(
    context: dg.AssetCheckExecutionContext, database: Database, gx_warm_up: ExpectationsWarmUp
) -> Iterator[dg.AssetCheckResult]:
    """The snapshot suites: imported users (and their drift), groups and memberships, and the
    odd Graph rows the transform left out or repaired."""
    yield from _run(context, database, SNAPSHOT_CHECKS)


@dg.multi_asset_check(specs=[c.spec for c in DIFF_CHECKS], **STEP)
def diff_checks(
    context: dg.AssetCheckExecutionContext, database: Database, gx_warm_up: ExpectationsWarmUp
) -> Iterator[dg.AssetCheckResult]:
    """The diff suites: the deactivation safety limit, no blanked addresses or names, and
    nothing held for a decision for long."""
    yield from _run(context, database, DIFF_CHECKS)


asset_checks = [staging_checks, snapshot_checks, diff_checks]
