"""Asset checks: the great-expectations suites of `sync_pipeline.expectations`, per tenant.

Every check is `blocking`: when it fails with ERROR severity (an expectation that guards the
load), Dagster skips everything downstream of its asset in the run, so `app_directory` never
applies bad data. Advisory findings fail with WARN severity and block nothing. The UI shows,
beside each asset, which expectation failed and a few sample rows (ids, addresses, names;
never secrets).
"""

import warnings
from typing import Any

import dagster as dg

from sync_pipeline import expectations
from sync_pipeline.defs.load import DRY_RUN_JOBS, sync_diff
from sync_pipeline.defs.partitions import tenant_partitions
from sync_pipeline.defs.resources import Database
from sync_pipeline.defs.transform import SNAPSHOT_GROUPS, SNAPSHOT_MEMBERSHIPS, SNAPSHOT_USERS

# One result per tenant partition needs `partitions_def` on the check, which Dagster 1.13 marks
# as preview; silence that one warning rather than every definitions load printing it.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)
CHECK: dict[str, Any] = {"partitions_def": tenant_partitions, "blocking": True}
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


def _guarding(context: dg.AssetCheckExecutionContext) -> bool:
    """Whether big changes block this run: not in a test sync (nothing is applied), nor when
    the operator launched it with app_directory's allow_mass_deactivation."""
    ops = (context.run.run_config or {}).get("ops") or {}
    config = (ops.get("app_directory") or {}).get("config") or {}
    allowed = bool(config.get("allow_mass_deactivation", False))
    return context.job_def.name not in DRY_RUN_JOBS and not allowed


def check_result(outcome: expectations.Outcome, tenant: str) -> dg.AssetCheckResult:
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
        passed=outcome.passed, severity=severity, description=description, metadata=metadata
    )


@dg.asset_check(asset=GRAPH_USERS, **CHECK)
def staging_users_valid(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    """Staged users: ids present and unique, as many as the extraction counted,
    userPrincipalName and accountEnabled present (a malformed UPN only warns)."""
    tenant = context.partition_key
    with database.engine().connect() as conn:
        return check_result(expectations.check_staging_users(conn, tenant), tenant)


@dg.asset_check(asset=GRAPH_GROUPS, **CHECK)
def staging_groups_valid(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    """Staged groups: ids present and unique, as many as the extraction counted."""
    tenant = context.partition_key
    with database.engine().connect() as conn:
        return check_result(expectations.check_staging_groups(conn, tenant), tenant)


# additional_deps: the member check reads staging.users, so it must wait for graph_users.
@dg.asset_check(asset=GRAPH_GROUP_MEMBERS, additional_deps=[GRAPH_USERS], **CHECK)
def staging_members_valid(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    """Staged memberships: every member is a staged user or group (or a contact, device or
    service principal), no members of unstaged groups, as many as the extraction counted."""
    tenant = context.partition_key
    with database.engine().connect() as conn:
        return check_result(expectations.check_staging_members(conn, tenant), tenant)


@dg.asset_check(asset=SNAPSHOT_USERS, **CHECK)
def snapshot_users_valid(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    """Imported users: an address that is present, well-formed, unique (case, Unicode width
    and spaces ignored) and not denied; managers are imported users, with no cycles."""
    tenant = context.partition_key
    settings = database.tenant_settings(tenant)
    with database.engine().connect() as conn:
        return check_result(expectations.check_snapshot_users(conn, settings), tenant)


@dg.asset_check(asset=SNAPSHOT_USERS, **CHECK)
def snapshot_users_drift(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    """Imported users against the last successful sync: WARN beyond drift_warn_percent
    (default 10), ERROR (blocking) beyond drift_error_percent (default 30); only WARN in a
    test sync or when the operator allowed a mass deactivation."""
    tenant = context.partition_key
    settings = database.tenant_settings(tenant)
    with database.engine().connect() as conn:
        outcome = expectations.check_drift(conn, settings, guard=_guarding(context))
    return check_result(outcome, tenant)


@dg.asset_check(asset=SNAPSHOT_GROUPS, **CHECK)
def snapshot_groups_valid(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    """Imported groups: unique ids, no empty or blank names or mapping targets."""
    tenant = context.partition_key
    with database.engine().connect() as conn:
        return check_result(expectations.check_snapshot_groups(conn, tenant), tenant)


@dg.asset_check(asset=SNAPSHOT_MEMBERSHIPS, **CHECK)
def snapshot_memberships_valid(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    """Memberships point at imported snapshot groups and users."""
    tenant = context.partition_key
    with database.engine().connect() as conn:
        return check_result(expectations.check_snapshot_memberships(conn, tenant), tenant)


@dg.asset_check(asset=sync_diff, **CHECK)
def sync_diff_within_safety_limit(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    """Deactivations within the tenant's safety limit (the load's numbers). Blocking in a
    sync; WARN in a test sync or when the operator allowed a mass deactivation."""
    tenant = context.partition_key
    settings = database.tenant_settings(tenant)
    with database.engine().connect() as conn:
        run_id = expectations.diff_run_id(conn, tenant, context.run.run_id)
        if run_id is None:
            return dg.AssetCheckResult(
                passed=True, description=f"tenant {tenant}: no diff computed yet"
            )
        outcome = expectations.check_diff_safety(conn, settings, run_id, guard=_guarding(context))
    return check_result(outcome, tenant)


@dg.asset_check(asset=sync_diff, **CHECK)
def sync_diff_keeps_addresses_and_names(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    """No update, adoption, reactivation or rename blanks a user's address or name or a
    group's name."""
    tenant = context.partition_key
    with database.engine().connect() as conn:
        run_id = expectations.diff_run_id(conn, tenant, context.run.run_id)
        if run_id is None:
            return dg.AssetCheckResult(
                passed=True, description=f"tenant {tenant}: no diff computed yet"
            )
        return check_result(expectations.check_diff_fields(conn, tenant, run_id), tenant)


asset_checks = [
    staging_users_valid,
    staging_groups_valid,
    staging_members_valid,
    snapshot_users_valid,
    snapshot_users_drift,
    snapshot_groups_valid,
    snapshot_memberships_valid,
    sync_diff_within_safety_limit,
    sync_diff_keeps_addresses_and_names,
]
