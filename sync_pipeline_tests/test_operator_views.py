"""What an operator reads: the next daily sync (tenant list, the tick's skip reason, the
partition's metadata) and the diff as a table in the UI's metadata."""

from __future__ import annotations

import dagster as dg
from click.testing import CliRunner

from sync_pipeline.cli import main
from sync_pipeline.defs.load import sync_diff


def test_next_sync_shown_and_the_diff_as_a_table(register, tenant_slug, database_url):
    register(tenant_slug, auto_sync=True, sync_time="03:30", timezone="Europe/London")
    result = CliRunner().invoke(main, ["sync", tenant_slug, "--dry-run"])
    assert result.exit_code == 0, result.output
    listing = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["tenant", "list"])
    assert "next sync" in listing.output
    row = next(line for line in listing.output.splitlines() if tenant_slug in line)
    assert "03:30 GMT" in row or "03:30 BST" in row

    record = (
        dg.DagsterInstance.get()
        .fetch_materializations(
            dg.AssetRecordsFilter(asset_key=sync_diff.key, asset_partitions=[tenant_slug]), limit=1
        )
        .records[0]
    )
    meta = record.asset_materialization.metadata
    assert "03:30" in meta["next_auto_sync"].value
    table = meta["change_list"]
    assert isinstance(table, dg.TableMetadataValue)
    assert [c.name for c in table.schema.columns] == [
        "entity", "action", "who / what", "before", "after"
    ]  # fmt: skip
    assert 0 < len(table.records) <= 50
    assert {r.data["entity"] for r in table.records} <= {"user", "group", "membership", "manager"}


def test_a_quiet_tick_names_the_next_syncs(register, tenant_slug, database_url):
    import datetime as dt

    from sync_pipeline.defs.automation import daily_tenant_syncs
    from sync_pipeline.defs.resources import Database

    register(tenant_slug, auto_sync=True, sync_time="04:10", timezone="UTC")
    at = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=at, resources={"database": Database()}
        )
        skipped = daily_tenant_syncs(context)
    assert isinstance(skipped, dg.SkipReason)
    assert "next: " in skipped.skip_message


def test_the_database_resource_is_configured_through_an_env_var():
    # The UI's Resources tab shows an EnvVar by name: what a deployment must set.
    from sync_pipeline.definitions import defs

    assert defs.resources["database"].url == dg.EnvVar("DATABASE_URL")
