"""Intraday syncs and the periodic full read (issue 17, point 1): the schedule's requests at
each evaluation time, against the registry in real Postgres, and a full read through the fake
Graph."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.core import settings
from sync_pipeline.core.settings import SettingsError, TenantSettings
from sync_pipeline.definitions import defs
from sync_pipeline.defs.automation import daily_tenant_syncs
from sync_pipeline.defs.extract import FULL_READ_TAG, extract_assets
from sync_pipeline.defs.partitions import TENANT_PARTITIONS
from sync_pipeline.defs.resources import Database
from sync_pipeline.registry import fullreads, intervals, schedule, tenants
from sync_pipeline_tests.support.pipeline import materialise

UTC = dt.UTC
KIND = schedule.SYNC_KIND_TAG
ZERO = "00000000-0000-0000-0000-000000000000"
BASE = {"tenant_id": ZERO, "client_id": ZERO, "client_secret_env": "X_SECRET"}
DAY = dt.datetime(2026, 1, 15, tzinfo=UTC)


def make(slug: str, **kw) -> TenantSettings:
    return settings.parse_settings({"slug": slug, **BASE, "sync_time": "03:00", **kw})


def ticks(first: dt.datetime, last: dt.datetime):
    """Every evaluation time of the schedule in (first, last]."""
    at = first + dt.timedelta(minutes=5)
    while at <= last:
        yield at
        at += dt.timedelta(minutes=5)


def evaluate(instance, database_url, at: dt.datetime, ready: list[str]):
    """One tick of the real schedule at `at`, on the registry in Postgres."""
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"database": Database(url=database_url)},
        repository_def=defs.get_repository_def(),
    )
    known = set(instance.get_dynamic_partitions(TENANT_PARTITIONS))
    if missing := [s for s in ready if s not in known]:
        instance.add_dynamic_partitions(TENANT_PARTITIONS, missing)
    return daily_tenant_syncs.evaluate_tick(context)


def mine(result, slug: str) -> list[dg.RunRequest]:
    return [r for r in result.run_requests or [] if r.partition_key == slug]


def job_origin():
    """The `sync` job's origin in this code location, as the queue records it."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="sync_pipeline.definitions"),
        location_name="sync_pipeline",
    )
    return RemoteRepositoryOrigin(location, "__repository__").get_job_origin("sync")


def set_full_read(engine, slug: str, at: dt.datetime | None) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM sync.full_reads WHERE tenant = :t"), {"t": slug})
        if at is not None:
            conn.execute(
                sa.text("INSERT INTO sync.full_reads (tenant, read_at) VALUES (:t, :at)"),
                {"t": slug, "at": at},
            )


@pytest.fixture
def saved(engine):
    """save(settings): register a tenant for this test; removed (with its full-read row)
    afterwards, so that no other test's tick sees it."""
    slugs: list[str] = []

    def save(s: TenantSettings, *, store: bool = True) -> TenantSettings:
        if store:
            with engine.begin() as conn:
                tenants.save(conn, s)
        slugs.append(s.slug)
        return s

    yield save
    with engine.begin() as conn:
        for slug in slugs:
            tenants.remove(conn, slug)
            conn.execute(sa.text("DELETE FROM sync.full_reads WHERE tenant = :t"), {"t": slug})


# -- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [3, 2000, "abc", 0, -5, True, 12.5, 7])
def test_an_invalid_sync_interval_is_refused_naming_tenant_setting_and_value(value):
    with pytest.raises(SettingsError) as err:
        make("acme", sync_interval=value)
    message = str(err.value)
    assert f"tenant acme: sync_interval {value!r}" in message
    assert "minutes" in message


@pytest.mark.parametrize(("value", "expected"), [(5, 5), ("15", 15), (1440, 1440), ("off", None)])
def test_a_sync_interval_is_minutes_or_off(value, expected):
    assert make("acme", sync_interval=value).sync_interval == expected


def test_off_in_yaml_is_off_and_the_setting_round_trips():
    text = (
        "tenants:\n  - slug: acme\n    tenant_id: " + ZERO + "\n    client_id: " + ZERO + "\n"
        "    client_secret_env: X_SECRET\n    sync_interval: off\n"
    )
    assert settings.load_yaml(text)[0].sync_interval is None  # YAML 1.1 reads off as false
    s = make("acme", sync_interval=30, full_read_every_days=3)
    assert settings.load_yaml(settings.dump_yaml([s]))[0] == s


def test_tenant_set_refuses_a_bad_interval_and_saves_a_good_one(cli, engine, tenant_slug, saved):
    saved(make(tenant_slug))
    for bad in ("3", "2000", "abc"):
        result = cli("tenant", "set", tenant_slug, f"sync_interval={bad}")
        assert result.exit_code == 2, result.output
        assert f"tenant {tenant_slug}: sync_interval '{bad}'" in " ".join(result.output.split())
    with engine.connect() as conn:
        assert tenants.get(conn, tenant_slug).version == 1
    assert cli("tenant", "set", tenant_slug, "sync_interval=15").exit_code == 0
    with engine.connect() as conn:
        assert tenants.get(conn, tenant_slug).settings.sync_interval == 15


# -- when interval syncs are due --------------------------------------------------------------


@pytest.mark.parametrize("interval", [5, 15, 35, 60, 1440])
def test_interval_slots_are_exactly_the_interval_apart_never_closer(interval):
    s = make("acme", sync_interval=interval)
    start = DAY
    keys = [
        d.run_key
        for at in ticks(start, start + dt.timedelta(days=3))
        for d in schedule.interval_between([s], at - dt.timedelta(minutes=5), at)
    ]
    assert len(keys) == 3 * 24 * 60 // interval
    slots = [
        d.due_at
        for at in ticks(start, start + dt.timedelta(days=3))
        for d in schedule.interval_between([s], at - dt.timedelta(minutes=5), at)
    ]
    gaps = {b - a for a, b in itertools.pairwise(slots)}
    assert gaps == {dt.timedelta(minutes=interval)}
    assert len(set(keys)) == len(keys)


def test_interval_tenants_are_spread_over_their_interval():
    offsets = {intervals.offset_minutes(f"tenant-{i}", 60) for i in range(100)}
    assert len(offsets) > 6 and all(o % 5 == 0 and 0 <= o < 60 for o in offsets)


def test_no_interval_syncs_without_auto_sync_or_without_an_interval():
    paused = make("paused", sync_interval=5, auto_sync=False)
    daily = make("daily")
    for at in ticks(DAY, DAY + dt.timedelta(hours=2)):
        assert schedule.interval_between([paused, daily], at - dt.timedelta(minutes=5), at) == []


def test_the_schedule_requests_an_interval_tenant_at_its_interval_and_not_more_often(
    engine, database_url, tenant_slug, saved
):
    s = saved(make(tenant_slug, sync_interval=15, sync_time="03:00"))
    set_full_read(engine, s.slug, DAY - dt.timedelta(days=1))
    start = DAY + dt.timedelta(hours=1)  # 01:00-04:00 UTC: the daily slot at 03:00 inside
    got: dict[dt.datetime, dg.RunRequest] = {}
    with dg.instance_for_test() as instance:
        for at in ticks(start, start + dt.timedelta(hours=3)):
            requests = mine(evaluate(instance, database_url, at, [s.slug]), s.slug)
            assert len(requests) <= 1  # one request per tenant a tick, whatever is due
            if requests:
                got[at] = requests[0]
    first = intervals.last_interval_slot(s, start) + dt.timedelta(minutes=15)
    expected = [first + dt.timedelta(minutes=15 * i) for i in range(12)]
    daily_at = dt.datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
    assert sorted(got) == sorted({*expected, daily_at})
    assert got[daily_at].tags[KIND] == "daily"  # on the grid, it takes the interval's place
    assert got[daily_at].run_key == f"daily:{s.slug}:2026-01-15"
    # every 15 minutes, never in between
    assert [at for at in sorted(got) if got[at].tags[KIND] == "interval"] == [
        at for at in expected if at != daily_at
    ]
    for at, request in got.items():
        assert request.tags["trigger"] == "schedule" and request.tags["tenant"] == s.slug
        assert FULL_READ_TAG not in request.tags
        if request.tags[KIND] == "interval":
            assert request.run_key == f"interval:{s.slug}:{at:%Y-%m-%dT%H:%MZ}"


def test_the_daily_sync_is_requested_beside_the_intervals_off_their_grid(
    engine, database_url, tenant_slug, saved
):
    """A daily slot between two interval slots is a request of its own, tagged daily."""
    s = make(tenant_slug, sync_interval=60, sync_time="03:00")
    offset = intervals.offset_minutes(s.slug, 60)
    # a sync_time five minutes after an interval slot, so never on the grid
    s = saved(make(tenant_slug, sync_interval=60, sync_time=f"03:{(offset + 5) % 60:02d}"))
    set_full_read(engine, s.slug, DAY - dt.timedelta(days=1))
    daily_at = dt.datetime.combine(DAY.date(), s.effective_sync_time, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        daily = mine(evaluate(instance, database_url, daily_at, [s.slug]), s.slug)
        before = mine(
            evaluate(instance, database_url, daily_at - dt.timedelta(minutes=5), [s.slug]), s.slug
        )
    assert [r.tags[KIND] for r in daily] == ["daily"]
    assert [r.tags[KIND] for r in before] == ["interval"]


# -- one run per tenant -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "status"),
    [
        ({"tenant": "{slug}", "trigger": "schedule"}, dg.DagsterRunStatus.STARTED),
        ({"tenant": "{slug}", "trigger": "schedule"}, dg.DagsterRunStatus.QUEUED),
        ({"dagster/partition": "{slug}"}, dg.DagsterRunStatus.STARTED),  # from the UI
    ],
)
def test_a_tenant_with_a_run_in_progress_is_skipped_not_queued_twice(
    engine, database_url, tenant_slug, saved, tags, status
):
    s = saved(make(tenant_slug, sync_interval=5))
    other = saved(make(f"{tenant_slug}-o", sync_interval=5))
    at = DAY + dt.timedelta(hours=12)
    busy = str(uuid.uuid4())
    with dg.instance_for_test() as instance:
        run_tags = {k: v.format(slug=s.slug) for k, v in tags.items()}
        instance.add_run(
            dg.DagsterRun(
                job_name="sync",
                run_id=busy,
                tags=run_tags,
                status=status,
                remote_job_origin=job_origin(),  # a queued run names where it will run
            )
        )
        result = evaluate(instance, database_url, at, [s.slug, other.slug])
        assert mine(result, s.slug) == []
        assert [r.tags[KIND] for r in mine(result, other.slug)] == ["interval"]  # others go on
        # the run over, the next tick requests the tenant again
        instance.report_run_failed(instance.get_run_by_id(busy))
        later = evaluate(instance, database_url, at + dt.timedelta(minutes=5), [s.slug])
    assert [r.tags[KIND] for r in mine(later, s.slug)] == ["interval"]


def test_a_quiet_tick_says_which_tenant_was_skipped_for_its_run(
    engine, database_url, tenant_slug, saved
):
    s = saved(make(tenant_slug, sync_interval=5))
    tick = schedule.plan_tick(
        [s],
        DAY + dt.timedelta(hours=12),
        DAY + dt.timedelta(hours=12, minutes=5),
        quarantined=[],
        ready=[s.slug],
        busy={s.slug: "run 1a2b3c4d: sync, started, interval"},
    )
    assert tick.requests == []
    assert f"{s.slug} (interval due, run 1a2b3c4d" in tick.skip_reason()


# -- the periodic full read -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_full", "every", "kind"),
    [
        (None, 7, "full"),  # never read in full
        (DAY - dt.timedelta(days=7, hours=-1), 7, "full"),  # 7 local days ago, a bit later
        (DAY - dt.timedelta(days=6), 7, "daily"),
        (DAY - dt.timedelta(days=1), 1, "full"),
        (DAY + dt.timedelta(hours=1), 1, "daily"),  # earlier today (a manual --full)
    ],
)
def test_the_daily_sync_is_a_full_read_when_one_is_due(
    engine, database_url, tenant_slug, saved, last_full, every, kind
):
    s = saved(make(tenant_slug, sync_time="03:00", full_read_every_days=every, sync_interval=30))
    set_full_read(engine, s.slug, last_full)
    with dg.instance_for_test() as instance:
        requests = mine(evaluate(instance, database_url, DAY.replace(hour=3), [s.slug]), s.slug)
        # an interval slot of the same tenant is never a full read
        interval_tick = next(
            at
            for at in ticks(DAY.replace(hour=12), DAY.replace(hour=13))
            if schedule.interval_between([s], at - dt.timedelta(minutes=5), at)
        )
        intraday = mine(evaluate(instance, database_url, interval_tick, [s.slug]), s.slug)
    assert len(requests) == 1
    request = requests[0]
    assert request.tags[KIND] == kind
    assert request.run_key == f"{kind}:{s.slug}:2026-01-15"
    assert (request.tags.get(FULL_READ_TAG) == "true") == (kind == "full")
    assert [r.tags[KIND] for r in intraday] == ["interval"]
    assert FULL_READ_TAG not in intraday[0].tags


def test_a_full_read_when_due_takes_the_full_path_and_is_recorded(
    engine, database_url, register, tenant_slug, fake_tenant, fake_graph, saved
):
    """Through the fake Graph: a staged row changed behind delta's back (delta reports only
    what changed in Graph) survives the interval sync, and the full read the schedule asks
    for puts it right."""
    s = register(tenant_slug, sync_time="03:00", timezone="UTC", sync_interval=15)
    saved(s, store=False)  # removed afterwards
    victim = fake_graph.tenant(fake_tenant["tenant_id"])["users"][0]
    with dg.instance_for_test() as instance:

        def run(request: dg.RunRequest) -> dict:
            result = materialise(
                instance,
                s.slug,
                assets=extract_assets,
                database_url=database_url,
                tags=dict(request.tags),
            )
            assert result.success
            return result.asset_materializations_for_node("graph_directory")[0].metadata

        first = dg.RunRequest(partition_key=s.slug, tags={"tenant": s.slug})
        assert run(first)["full_read"].value is True  # a first read is a full one
        with engine.connect() as conn:
            first_full = fullreads.last_full_reads(conn)[s.slug]
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE staging.users SET display_name = 'tampered' "
                    "WHERE tenant = :t AND id = :id"
                ),
                {"t": s.slug, "id": victim["id"]},
            )

        # an interval tick: incremental, the tampered row stays
        at = next(
            at
            for at in ticks(DAY.replace(hour=12), DAY.replace(hour=13))
            if schedule.interval_between([s], at - dt.timedelta(minutes=5), at)
        )
        (interval,) = mine(evaluate(instance, database_url, at, [s.slug]), s.slug)
        assert interval.tags[KIND] == "interval"
        meta = run(interval)
        assert (meta["mode_users"].value, meta["full_read"].value) == ("incremental", False)
        assert display_name(engine, s.slug, victim["id"]) == "tampered"

        # eight days later, the daily slot: a full read, which re-reads every user
        set_full_read(engine, s.slug, DAY - dt.timedelta(days=8))
        (full,) = mine(evaluate(instance, database_url, DAY.replace(hour=3), [s.slug]), s.slug)
        assert (full.tags[KIND], full.run_key) == ("full", f"full:{s.slug}:2026-01-15")
        meta = run(full)
        assert (meta["mode_users"].value, meta["mode_groups"].value) == ("full", "full")
        assert meta["full_read"].value is True
    assert display_name(engine, s.slug, victim["id"]) == victim["displayName"] != "tampered"
    with engine.connect() as conn:
        assert fullreads.last_full_reads(conn)[s.slug] > first_full


def display_name(engine, tenant: str, user_id: str) -> str:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT display_name FROM staging.users WHERE tenant = :t AND id = :id"),
            {"t": tenant, "id": user_id},
        ).scalar_one()


def test_tenant_list_shows_the_interval(engine, tenant_slug, saved):
    from click.testing import CliRunner

    from sync_pipeline.cli import main

    saved(make(tenant_slug, sync_interval=15, sync_time="03:00"))
    listing = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["tenant", "list"])
    assert listing.exit_code == 0, listing.output
    row = next(line for line in listing.output.splitlines() if tenant_slug in line)
    assert "03:00 UTC, every 15 min" in row
