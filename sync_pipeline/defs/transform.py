"""Transform: staging.* + the tenant's settings → sync.snapshot_* (what the app should hold)."""

import time

import dagster as dg

from sync_pipeline.checks import scope
from sync_pipeline.core import db
from sync_pipeline.core.settings import SettingsError
from sync_pipeline.defs import metadata
from sync_pipeline.defs.extract import extract_assets
from sync_pipeline.defs.partitions import tenant_partitions
from sync_pipeline.defs.resources import Database
from sync_pipeline.defs.stopping import stop_if_asked, test_pause
from sync_pipeline.registry import tenants
from sync_pipeline.transform import rules, unreadable

SNAPSHOT_USERS = dg.AssetKey("snapshot_users")
SNAPSHOT_GROUPS = dg.AssetKey("snapshot_groups")
SNAPSHOT_MEMBERSHIPS = dg.AssetKey("snapshot_memberships")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            SNAPSHOT_USERS,
            description="Every Graph user of the tenant with whether the settings include "
            "them, the address they get, and the reason when they are left out.",
            deps=extract_assets,
            group_name="transform",
            kinds={"postgres"},
        ),
        dg.AssetSpec(
            SNAPSHOT_GROUPS,
            description="Every Graph group with whether it is imported, created or mapped "
            "onto an existing app group, and why not.",
            deps=extract_assets,
            group_name="transform",
            kinds={"postgres"},
        ),
        dg.AssetSpec(
            SNAPSHOT_MEMBERSHIPS,
            description="Flattened memberships: each included user in every imported group "
            "at or above the groups they are in.",
            deps=extract_assets,
            group_name="transform",
            kinds={"postgres"},
        ),
    ],
    partitions_def=tenant_partitions,
    can_subset=False,
)
def directory_snapshot(context: dg.AssetExecutionContext, database: Database):
    """Apply the tenant's settings to the latest extraction, set-wise, in one transaction."""
    stop_if_asked(context)
    tenant, started = context.partition_key, time.monotonic()
    settings = database.tenant_settings(tenant)
    with database.engine().begin() as conn:
        test_pause("transform")
        try:
            # Group ids the settings name must exist in this very extraction.
            tenants.check_before_run(conn, settings)
            # A scope group whose members Graph refused: who is in scope is unknown.
            unreadable.check_scope(conn, settings)
        except (SettingsError, unreadable.ScopeUnreadable) as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None
        # weekly (full_verification_days): the incremental snapshot is compared with a rebuild
        verification = scope.decide(conn, settings, "snapshot_rebuild", "verify")
        counts, refresh = rules.refresh_snapshot(conn, settings, verify=verification.whole)
        scope.record(conn, tenant, verification, refresh.verified != "mismatch", commit=False)
    if refresh.verified == "mismatch":
        # the full rebuild was kept and the next transform rebuilds in full; this run stops
        # before the diff: the incremental path broke an invariant of ours
        raise metadata.verification_failure(
            tenant,
            "snapshot row(s) where the incremental transform and a full rebuild disagree",
            refresh.mismatches,
            refresh.mismatch_count,
            "The full rebuild was kept; the next sync rebuilds in full.",
            {**refresh.metadata(), **verification.facts()},
        )
    maintenance = metadata.plain(
        db.vacuum_after_load(database.engine(), list(rules.SNAPSHOT_TABLES))
    )
    seconds = round(time.monotonic() - started, 3)
    user_meta = {k: v for k, v in counts.items() if k.startswith(("users_", "excluded_"))}
    user_meta |= {k: v for k, v in counts.items() if k.startswith("managers")}
    group_meta = {k: v for k, v in counts.items() if k.startswith("groups_")}
    yield dg.MaterializeResult(
        asset_key=SNAPSHOT_USERS,
        metadata={
            **user_meta,
            **refresh.metadata(),
            **{f"transform_{k}": v for k, v in verification.facts().items()},
            "seconds": seconds,
            **maintenance,
        },
    )
    yield dg.MaterializeResult(asset_key=SNAPSHOT_GROUPS, metadata=group_meta)
    yield dg.MaterializeResult(
        asset_key=SNAPSHOT_MEMBERSHIPS, metadata={"memberships": counts.get("memberships", 0)}
    )
