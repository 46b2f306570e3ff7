"""The whole sync, stage by stage, through Dagster against real Postgres and the fake Graph."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from sync_pipeline.definitions import defs
from sync_pipeline.defs.extract import extract_assets
from sync_pipeline.defs.load import app_directory, sync_diff
from sync_pipeline.defs.transform import directory_snapshot
from sync_pipeline.extract.staging import COLUMNS
from sync_pipeline_tests.support.fakegraph import expected_in_scope
from sync_pipeline_tests.support.pipeline import materialise

ALL_ASSETS = [*extract_assets, directory_snapshot, sync_diff, app_directory]


def app_users(engine: sa.Engine, tenant: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT * FROM app.users WHERE tenant = :t ORDER BY email"), {"t": tenant}
        ).all()


def test_definitions_load_with_every_asset_and_job():
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {
        "graph_users",
        "graph_groups",
        "graph_group_members",
        "graph_subscribed_skus",
        "graph_user_managers",
        "snapshot_users",
        "snapshot_groups",
        "snapshot_memberships",
        "sync_diff",
        "app_directory",
        "test_sync_report",
    } <= keys
    assert {j.name for j in repo.get_all_jobs()} >= {"sync", "test_sync"}
    for spec in repo.asset_graph.get_all_asset_keys():
        node = repo.asset_graph.get(spec)
        assert node.description, f"{spec} has no description"


def test_extract_stage_reads_the_whole_directory(
    instance, database_url, engine, register, tenant_slug, fake_tenant
):
    register(tenant_slug)
    result = materialise(
        instance,
        tenant_slug,
        database_url=database_url,
        assets=ALL_ASSETS,
        selection=[k for a in extract_assets for k in a.keys],
    )
    assert result.success
    with engine.connect() as conn:
        n = lambda table: conn.execute(  # noqa: E731
            sa.text(f"SELECT count(*) FROM staging.{table} WHERE tenant = :t"), {"t": tenant_slug}
        ).scalar()
        assert n("users") == len(fake_tenant["users"])
        assert n("groups") == len(fake_tenant["groups"])
        assert n("group_members") == sum(len(m) for m in fake_tenant["members"].values())
        assert n("user_managers") == len(fake_tenant["managers"])
        assert n("subscribed_skus") == len(fake_tenant["subscribedSkus"])
        assert n("user_licences") == sum(len(u["assignedLicenses"]) for u in fake_tenant["users"])
    mats = [
        m
        for m in result.asset_materializations_for_node("graph_directory")
        if m.asset_key == dg.AssetKey("graph_users")
    ]
    assert mats[0].metadata["users"].value == len(fake_tenant["users"])
    assert mats[0].metadata["graph_requests"].value >= 1
    # the upkeep after the load is reported (whether it vacuumed depends on the shared tables)
    vacuumed = mats[0].metadata["vacuumed"].value
    assert vacuumed == "none" or set(vacuumed.split(", ")) <= {f"staging.{t}" for t in COLUMNS}
    assert mats[0].metadata["vacuum_seconds"].value >= 0


def test_full_sync_loads_in_scope_users_then_converges(
    instance, database_url, engine, register, tenant_slug, fake_tenant
):
    register(tenant_slug)
    first = materialise(
        instance, tenant_slug, database_url=database_url, assets=ALL_ASSETS, selection="*"
    )
    assert first.success
    expected = expected_in_scope(fake_tenant)
    rows = app_users(engine, tenant_slug)
    assert {r.email.lower() for r in rows} == set(expected)
    assert all(r.is_active and r.source == "m365" and r.external_id for r in rows)
    with engine.connect() as conn:
        groups = conn.execute(
            sa.text("SELECT count(*) FROM app.groups WHERE tenant = :t"), {"t": tenant_slug}
        ).scalar()
        members = conn.execute(
            sa.text("SELECT count(*) FROM app.group_members WHERE tenant = :t"),
            {"t": tenant_slug},
        ).scalar()
    distribution = [
        g
        for g in fake_tenant["groups"]
        if "Unified" not in g["groupTypes"] and g["mailEnabled"] and not g["securityEnabled"]
    ]
    assert groups == len(fake_tenant["groups"]) - len(distribution)
    assert members > 0

    before = [tuple(r) for r in app_users(engine, tenant_slug)]
    second = materialise(
        instance, tenant_slug, database_url=database_url, assets=ALL_ASSETS, selection="*"
    )
    assert second.success
    applied = second.asset_materializations_for_node("app_directory")[0].metadata
    assert all(v.value == 0 for k, v in applied.items() if k.startswith(("user_", "group_")))
    assert [tuple(r) for r in app_users(engine, tenant_slug)] == before


def test_wrong_client_secret_fails_with_the_aadsts_code_and_writes_nothing(
    instance, database_url, engine, register, tenant_slug, monkeypatch
):
    monkeypatch.setenv("SP_WRONG_SECRET", "not-the-secret")
    register(tenant_slug, client_secret_env="SP_WRONG_SECRET")
    result = materialise(
        instance,
        tenant_slug,
        database_url=database_url,
        assets=ALL_ASSETS,
        selection="*",
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "AADSTS7000215" in message
    assert "not-the-secret" not in message
    assert app_users(engine, tenant_slug) == []


def test_sync_job_records_a_run_row(instance, database_url, register, engine, tenant_slug):
    register(tenant_slug)
    result = materialise(instance, tenant_slug, database_url=database_url)
    assert result.success
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT * FROM sync.runs WHERE tenant = :t"), {"t": tenant_slug}
        ).one()
    assert row.status == "success" and row.dagster_run_id == result.run_id
    assert not row.dry_run
    assert row.counts["user_create"] == len(app_users(engine, tenant_slug))


def test_the_apply_uses_the_diff_its_run_planned_and_checked(
    instance, database_url, register, engine, tenant_slug
):
    register(tenant_slug)
    result = materialise(instance, tenant_slug, database_url=database_url)
    assert result.success
    planned = result.asset_materializations_for_node("sync_diff")[0].metadata
    applied = result.asset_materializations_for_node("app_directory")[0].metadata
    assert applied["diff_reused"].value is True
    assert applied["sync_run_id"].value == planned["sync_run_id"].value
    assert applied["user_create"].value == planned["user_create"].value > 0
    assert applied["membership_add"].value == planned["membership_add"].value > 0

    # The apply materialised on its own (a run with no sync_diff) computes the diff itself.
    # (A field changed in the app is set back from Graph; memberships removed in the app
    # would stay removed: the app's own decision, test_gate.py.)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE app.users SET job_title = 'set in the app' WHERE tenant = :t"),
            {"t": tenant_slug},
        )
    alone = materialise(
        instance,
        tenant_slug,
        database_url=database_url,
        assets=ALL_ASSETS,
        selection="app_directory",
    )
    applied = alone.asset_materializations_for_node("app_directory")[0].metadata
    assert applied["diff_reused"].value is False
    assert applied["user_update"].value == planned["user_create"].value


def test_a_planned_diff_lost_in_a_crash_is_computed_again(engine, register, tenant_slug):
    """sync.diffs is unlogged: a server crash empties it, and the apply must not then read
    the planned counts over an empty table as 'nothing to do'."""
    from sync_pipeline.load import diff
    from sync_pipeline.registry import runs

    settings = register(tenant_slug)
    with engine.begin() as conn:  # a snapshot to diff against: two users, no app rows yet
        conn.execute(
            sa.text(
                "INSERT INTO sync.snapshot_users (tenant, graph_id, included, email)"
                " VALUES (:t, 'g1', true, 'a@x.example'), (:t, 'g2', true, 'b@x.example')"
            ),
            {"t": tenant_slug},
        )
        run_id = runs.ensure(conn, tenant_slug, "dagster-run-1", dry_run=False)
        planned = diff.compute_diff(conn, tenant_slug, run_id, settings)
        assert planned["user_create"] == 2
        assert diff.planned_diff(conn, tenant_slug, run_id, settings) == (planned, False)
        conn.execute(sa.text("DELETE FROM sync.diffs WHERE run_id = :r"), {"r": run_id})
        assert diff.planned_diff(conn, tenant_slug, run_id, settings) == (planned, True)
        assert diff.apply_diff(conn, tenant_slug, run_id)["user_create"] == 2
