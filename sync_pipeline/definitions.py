"""The one Definitions object of the code location."""

import dagster as dg

from sync_pipeline.defs.alerts import credential_health, sync_failure_alerts
from sync_pipeline.defs.automation import daily_tenant_syncs, tenant_partitions_sensor
from sync_pipeline.defs.checks import asset_checks
from sync_pipeline.defs.executors import default_executor
from sync_pipeline.defs.extract import extract_assets
from sync_pipeline.defs.jobs import sync_job, test_sync_job
from sync_pipeline.defs.load import load_assets
from sync_pipeline.defs.notifications import notification_subscriptions, notification_syncs
from sync_pipeline.defs.outbox import event_deliveries
from sync_pipeline.defs.resources import Database, Graph
from sync_pipeline.defs.staleness import tenant_staleness_sensor
from sync_pipeline.defs.transform import directory_snapshot


def build_defs() -> dg.Definitions:
    """The code location's definitions; the executor follows the environment at build time."""
    return dg.Definitions(
        assets=[*extract_assets, directory_snapshot, *load_assets],
        asset_checks=asset_checks,
        jobs=[sync_job, test_sync_job],
        schedules=[daily_tenant_syncs],
        sensors=[
            tenant_partitions_sensor,
            sync_failure_alerts,
            credential_health,
            tenant_staleness_sensor,
            notification_subscriptions,
            notification_syncs,
            event_deliveries,
        ],
        # Configuration through dg.EnvVar: the UI's Resources tab names what a deployment sets
        # (the CLI, `dagster dev` from the root and the embedded default all export it).
        resources={"database": Database(url=dg.EnvVar("DATABASE_URL")), "graph": Graph()},
        executor=default_executor(),
    )


defs = build_defs()
