"""The daily schedule: exactly the due tenants, once each, in their own time zones (the
intraday intervals and the periodic full read: test_intraday.py)."""

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.core.settings import TenantSettings, default_sync_time
from sync_pipeline.definitions import defs
from sync_pipeline.defs.automation import daily_tenant_syncs, tenant_partitions_sensor
from sync_pipeline.defs.partitions import TENANT_PARTITIONS
from sync_pipeline.defs.resources import Database
from sync_pipeline.registry import runs, schedule, tenants

UTC = dt.UTC


def tenant(slug: str, at: str, zone: str, **kw) -> TenantSettings:
    return TenantSettings(
        slug=slug,
        tenant_id="00000000-0000-0000-0000-000000000001",
        client_id="00000000-0000-0000-0000-000000000002",
        client_secret_env="X_SECRET",
        sync_time=dt.time.fromisoformat(at),
        timezone=zone,
        **kw,
    )


FLEET = [
    tenant("london", "02:00", "Europe/London"),
    tenant("new-york", "02:00", "America/New_York"),
    tenant("tokyo", "02:00", "Asia/Tokyo"),
    tenant("kolkata", "01:30", "Asia/Kolkata"),
    tenant("paused", "02:00", "UTC", auto_sync=False),
    tenant("utc", "02:00", "UTC"),
]


@pytest.mark.parametrize(
    ("end_utc", "expected"),
    [
        ("2026-01-15T02:00:00", ["london", "utc"]),  # London is on GMT in January
        ("2026-07-15T01:00:00", ["london"]),  # and on BST in July
        ("2026-01-15T07:00:00", ["new-york"]),
        ("2026-01-14T17:00:00", ["tokyo"]),
        ("2026-01-14T20:00:00", ["kolkata"]),  # 01:30 IST = 20:00 UTC the day before
        ("2026-01-15T02:05:00", []),  # the slot belongs to the previous window only
        ("2026-01-15T12:00:00", []),
    ],
)
def test_exactly_the_due_tenants_at_each_instant(end_utc, expected):
    end = dt.datetime.fromisoformat(end_utc).replace(tzinfo=UTC)
    due = schedule.due_between(FLEET, end - dt.timedelta(minutes=5), end)
    assert [d.slug for d in due] == expected


def test_each_tenant_once_a_day_over_a_year_including_dst_changes():
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    counts: dict[str, set] = {}
    t = start
    while t < start + dt.timedelta(days=365):
        for due in schedule.due_between(FLEET, t, t + dt.timedelta(minutes=5)):
            counts.setdefault(due.slug, []).append(due.run_key)
        t += dt.timedelta(minutes=5)
    for slug in ("london", "new-york", "tokyo", "kolkata", "utc"):
        keys = counts[slug]
        assert len(keys) == 365 and len(set(keys)) == 365, slug
    assert "paused" not in counts


def test_a_slot_in_the_spring_forward_gap_still_runs_that_day():
    gap = tenant("gap", "02:30", "Europe/London")  # 2026-03-29 01:00-02:00 UTC jumps
    day_start = dt.datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    due = schedule.due_between([gap], day_start, day_start + dt.timedelta(days=1))
    assert [d.local_day for d in due] == [dt.date(2026, 3, 29)]


def test_default_sync_time_is_spread_over_the_night_and_stable():
    times = {default_sync_time(f"tenant-{i}") for i in range(200)}
    assert all(dt.time(0, 0) <= t < dt.time(6, 0) for t in times)
    assert len(times) > 100
    assert default_sync_time("contoso") == default_sync_time("contoso")


@pytest.fixture
def fleet_db(engine, tenant_slug):
    """Two tenants registered, one of them quarantined by three failed syncs; both read in
    full the day before (so that their sync at 03:00 is a daily one, not a full read)."""
    good = tenant(f"{tenant_slug}-good", "03:00", "Europe/Paris")
    bad = tenant(f"{tenant_slug}-bad", "03:00", "Europe/Paris")
    with engine.begin() as conn:
        for settings in (good, bad):
            tenants.save(conn, settings)
            conn.execute(
                sa.text("INSERT INTO sync.full_reads (tenant, read_at) VALUES (:t, :at)"),
                {"t": settings.slug, "at": dt.datetime(2026, 1, 14, 2, 5, tzinfo=UTC)},
            )
        for i in range(3):
            run_id = runs.ensure(conn, bad.slug, f"dagster-{i}", dry_run=False)
            runs.finish(conn, run_id, "failed", error="graph_users: AADSTS7000215")
    yield good, bad
    with engine.begin() as conn:
        for settings in (good, bad):
            tenants.remove(conn, settings.slug)
            conn.execute(
                sa.text("DELETE FROM sync.full_reads WHERE tenant = :t"), {"t": settings.slug}
            )


def test_schedule_requests_due_tenants_and_skips_quarantined(fleet_db, database_url):
    good, bad = fleet_db
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 1, 15, 2, 0, tzinfo=UTC),  # 03:00 CET
            resources={"database": Database(url=database_url)},
            repository_def=defs.get_repository_def(),
        )
        instance.add_dynamic_partitions(TENANT_PARTITIONS, [good.slug, bad.slug])
        result = daily_tenant_syncs.evaluate_tick(context)
    mine = [r for r in result.run_requests or [] if r.partition_key.startswith(good.slug[:10])]
    assert [r.partition_key for r in mine] == [good.slug]
    assert mine[0].run_key == f"daily:{good.slug}:2026-01-15"
    assert mine[0].tags["trigger"] == "schedule"
    assert mine[0].tags[schedule.SYNC_KIND_TAG] == "daily"


def test_a_successful_sync_lifts_the_quarantine(fleet_db, database_url, engine):
    good, bad = fleet_db
    with engine.begin() as conn:
        run_id = runs.ensure(conn, bad.slug, "dagster-manual", dry_run=False)
        runs.finish(conn, run_id, "success")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 1, 15, 2, 0, tzinfo=UTC),
            resources={"database": Database(url=database_url)},
            repository_def=defs.get_repository_def(),
        )
        instance.add_dynamic_partitions(TENANT_PARTITIONS, [good.slug, bad.slug])
        result = daily_tenant_syncs.evaluate_tick(context)
    assert bad.slug in [r.partition_key for r in result.run_requests or []]


def test_partition_sensor_adds_and_removes_tenant_partitions(engine, database_url, tenant_slug):
    settings = tenant(tenant_slug, "03:00", "UTC")
    with engine.begin() as conn:
        tenants.save(conn, settings)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANT_PARTITIONS, ["gone-tenant"])
        context = dg.build_sensor_context(
            instance=instance, resources={"database": Database(url=database_url)}
        )
        result = tenant_partitions_sensor(context)
        adds = [
            r
            for r in result.dynamic_partitions_requests
            if r.partition_keys and type(r).__name__.startswith("Add")
        ]
        deletes = [
            r for r in result.dynamic_partitions_requests if type(r).__name__.startswith("Delete")
        ]
        assert tenant_slug in adds[0].partition_keys
        assert deletes[0].partition_keys == ["gone-tenant"]
    with engine.begin() as conn:
        tenants.remove(conn, tenant_slug)
        count = conn.execute(
            sa.text("SELECT count(*) FROM sync.tenant_settings WHERE slug = :s"), {"s": tenant_slug}
        ).scalar()
    assert count == 0
