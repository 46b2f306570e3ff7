"""Staleness (issue 17, point 3): the age of each tenant's last complete read and last applied
sync, the freshness check, `tenant list`, and the sensor that alerts ops once and daily while
a tenant stays stale and tells its admin what to fix. Real Postgres, a real SMTP server, the
fake Graph; time is injected (`evaluate(..., now)`), never slept."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import dagster as dg
import sqlalchemy as sa

from sync_pipeline.defs.checks import staging_checks
from sync_pipeline.defs.extract import extract_assets
from sync_pipeline.defs.resources import Database, Graph
from sync_pipeline.defs.staleness import CHECK_KEY, CHECK_NAME, evaluate, tenant_staleness_sensor
from sync_pipeline.registry import staleness
from sync_pipeline_tests.support.cli import run_cli
from sync_pipeline_tests.support.database import save_tenant
from sync_pipeline_tests.support.pipeline import evaluations, materialise
from sync_pipeline_tests.support.rows import make_settings

HOUR = dt.timedelta(hours=1)
LOG = logging.getLogger("test_staleness")
OPS = "ops@example.test"
ADMIN = "it@fabrikam.test"


def record_read(conn: sa.Connection, tenant: str, at: dt.datetime) -> None:
    """A complete read of the tenant at `at`, as an extraction records it."""
    conn.execute(
        sa.text(
            "INSERT INTO staging.extractions (tenant, entity, rows, requests, extracted_at) "
            "VALUES (:t, 'users', 1, 1, :at) ON CONFLICT (tenant, entity) "
            "DO UPDATE SET extracted_at = excluded.extracted_at"
        ),
        {"t": tenant, "at": at},
    )


def record_run(
    conn: sa.Connection,
    tenant: str,
    *,
    started: dt.datetime,
    status: str = "success",
    dry_run: bool = False,
    dagster_run_id: str | None = "from-dagster",
    undo_of: int | None = None,
    error: str | None = None,
) -> int:
    """A sync.runs row as a sync, a test sync or an undo leaves it (a minute long)."""
    return conn.execute(
        sa.text(
            "INSERT INTO sync.runs (tenant, dagster_run_id, dry_run, status, started_at, "
            "finished_at, error, undo_of) VALUES (:t, CAST(:d AS text) || gen_random_uuid()::text, "
            ":dry, :status, "
            ":started, :finished, :error, :undo_of) RETURNING id"
        ),
        {
            "t": tenant,
            "d": dagster_run_id,
            "dry": dry_run,
            "status": status,
            "started": started,
            "finished": started + dt.timedelta(minutes=1),
            "error": error,
            "undo_of": undo_of,
        },
    ).scalar_one()


def backdate_read(engine: sa.Engine, tenant: str, by: dt.timedelta) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE staging.extractions SET extracted_at = extracted_at - :by WHERE tenant = :t"
            ),
            {"t": tenant, "by": by},
        )


def test_ages_count_only_complete_reads_and_applied_syncs(engine, tenant_slug):
    settings = save_tenant(engine, make_settings(tenant_slug, timezone="Europe/Paris"))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with engine.begin() as conn:
        record_read(conn, tenant_slug, now - 40 * HOUR)
        applied = record_run(conn, tenant_slug, started=now - 41 * HOUR - dt.timedelta(minutes=1))
        # none of these is an applied sync: a test sync, an undo, a failed sync
        record_run(conn, tenant_slug, started=now - 2 * HOUR, dry_run=True)
        record_run(conn, tenant_slug, started=now - 3 * HOUR, dagster_run_id=None, undo_of=applied)
        record_run(conn, tenant_slug, started=now - 50 * HOUR, status="failed", error="older")
        record_run(
            conn,
            tenant_slug,
            started=now - 4 * HOUR,
            status="failed",
            error="graph_directory: AADSTS7000215: Invalid client secret provided.",
        )
    with engine.connect() as conn:
        f = staleness.of_tenant(conn, settings, now)
        relaxed = staleness.freshness(
            conn, [settings.model_copy(update={"stale_after_hours": 48})], now
        )
    assert f.read_age == 40 * HOUR
    assert f.applied_age == 41 * HOUR
    assert f.stale and f.stale_since == now - 4 * HOUR
    # the latest failure since the read, not the one before it
    assert f.last_error is not None and f.last_error.startswith("graph_directory: AADSTS7000215")
    paris = (now - 40 * HOUR).astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M %Z")
    assert f.read_text() == f"1 day and 16 hours ago ({paris})"
    assert "older than stale_after_hours 36" in f.sentence()
    assert not relaxed[0].stale and "within stale_after_hours 48" in relaxed[0].sentence()


def test_a_tenant_never_read_is_stale_once_registered_for_longer_than_the_limit(
    engine, tenant_slug
):
    settings = save_tenant(engine, make_settings(tenant_slug))
    now = dt.datetime.now(dt.UTC)
    with engine.connect() as conn:
        new = staleness.of_tenant(conn, settings, now)
        later = staleness.of_tenant(conn, settings, now + 37 * HOUR)
    assert new.read_at is None and new.read_text() == "never" and not new.stale
    assert later.stale and "no complete read of Graph yet" in later.sentence()


def test_tenant_list_shows_both_ages_and_marks_the_stale(engine, tenant_slug, tmp_path):
    stale = save_tenant(engine, make_settings(tenant_slug, timezone="Asia/Tokyo"))
    fresh = save_tenant(engine, make_settings(f"{tenant_slug}-b"))
    never = save_tenant(engine, make_settings(f"{tenant_slug}-c"))
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        record_read(conn, stale.slug, now - 40 * HOUR)
        record_run(conn, stale.slug, started=now - 50 * HOUR - dt.timedelta(minutes=1))
        record_read(conn, fresh.slug, now - 3 * HOUR)
        record_run(conn, fresh.slug, started=now - 3 * HOUR - dt.timedelta(minutes=1))
    listing = run_cli("tenant", "list")  # off a terminal: whole rows
    assert listing.returncode == 0, listing.stderr
    assert "last complete read" in listing.stdout and "last applied sync" in listing.stdout
    rows = {
        slug: next(line for line in listing.stdout.splitlines() if f" {slug} " in line)
        for slug in (stale.slug, fresh.slug, never.slug)
    }
    assert "1 day and 16 hours ago, stale (over 36 h)" in rows[stale.slug]
    assert "JST" in rows[stale.slug]  # the last sync's time, in the tenant's zone
    assert "2 days and 2 hours ago" in rows[stale.slug]
    assert "3 hours ago" in rows[fresh.slug] and "stale" not in rows[fresh.slug]
    assert rows[never.slug].count("never") == 3  # last sync, last read, last applied sync


def test_freshness_check_green_after_a_sync_red_once_the_read_is_too_old(
    register, tenant_slug, engine, database_url, instance
):
    register(tenant_slug)
    synced = materialise(instance, tenant_slug)
    assert synced.success
    check = evaluations(synced)[CHECK_NAME]
    assert check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "within stale_after_hours 36" in (check.description or "")
    assert check.metadata["last_complete_read_age_hours"].value < 1

    backdate_read(engine, tenant_slug, 37 * HOUR)
    # the check alone, as the UI runs it: Dagster 1.13's in-process execution refuses a
    # partition_key for a selection of checks only, so the run carries its partition as a tag
    alone = dg.materialize(
        [*extract_assets, staging_checks],
        selection=dg.AssetSelection.checks(CHECK_KEY),
        instance=instance,
        resources={"database": Database(url=database_url), "graph": Graph()},
        tags={"dagster/partition": tenant_slug},
    )
    assert alone.success  # advisory: a red freshness check fails no run
    red = evaluations(alone)[CHECK_NAME]
    assert not red.passed and red.severity == dg.AssetCheckSeverity.WARN
    assert red.metadata["last_complete_read_age_hours"].value >= 37
    assert f"sync-pipeline sync {tenant_slug}" in (red.description or "")


def mails_about(inbox, tenant: str) -> list[tuple[list[str], object]]:
    """The messages of the SMTP server about this tenant (other tests' tenants share the
    database, and the injected time makes them stale too)."""
    return [(rcpt, msg) for rcpt, msg in inbox.messages if tenant in msg["Subject"]]


def test_sensor_alerts_once_then_daily_and_stops_after_a_fresh_read(
    register, tenant_slug, engine, database_url, instance, smtp_server, monkeypatch
):
    monkeypatch.setenv("OPS_ALERT_EMAIL", OPS)
    monkeypatch.setenv("SP_EXPIRED_SECRET", "expired-secret")
    database = Database(url=database_url)
    register(tenant_slug, admin_email=ADMIN)
    assert materialise(instance, tenant_slug).success
    with engine.connect() as conn:
        read = staleness.last_read(conn, tenant_slug)
    assert read is not None

    # the next sync fails signing in: its read never completes, so the last read stays
    register(tenant_slug, admin_email=ADMIN, client_secret_env="SP_EXPIRED_SECRET")
    assert not materialise(instance, tenant_slug, raise_on_error=False).success
    with engine.connect() as conn:
        assert staleness.last_read(conn, tenant_slug) == read

    # within the limit: nothing
    evaluate(database, read + 35 * HOUR, LOG)
    assert mails_about(smtp_server, tenant_slug) == []

    # past it: ops alerted, the admin told what to fix, the check recorded red
    first = read + 37 * HOUR
    tick = evaluate(database, first, LOG)
    assert tenant_slug in tick.stale and tenant_slug in tick.reported
    sent = mails_about(smtp_server, tenant_slug)
    assert sorted(rcpt[0] for rcpt, _ in sent) == sorted([OPS, ADMIN])
    ops = next(m for rcpt, m in sent if rcpt == [OPS]).get_content()
    admin = next(m for rcpt, m in sent if rcpt == [ADMIN]).get_content()
    assert "1 day and 13 hours ago" in ops and "AADSTS7000215" in ops
    assert f"sync-pipeline sync {tenant_slug}" in ops
    assert f"sync-pipeline doctor {tenant_slug}" in ops
    assert "AADSTS7000215" in admin and "client secret" in admin
    assert f"sync-pipeline sync {tenant_slug}" in admin
    assert not any("expired-secret" in m.get_content() for _, m in sent)
    [event] = [e for e in tick.events if e.partition == tenant_slug]
    assert event.check_name == CHECK_NAME and not event.passed
    assert event.severity == dg.AssetCheckSeverity.WARN

    # the same day: nothing again (the state is in Postgres, not in this process)
    tick = evaluate(database, first + 12 * HOUR, LOG)
    assert tenant_slug in tick.stale and tenant_slug not in tick.reported
    assert len(mails_about(smtp_server, tenant_slug)) == 2

    # the next day: ops reminded, the admin not told twice
    evaluate(database, first + 24 * HOUR, LOG)
    sent = mails_about(smtp_server, tenant_slug)
    assert len(sent) == 3 and sent[-1][0] == [OPS]
    assert "reminder 1" in sent[-1][1].get_content()

    # fixed and synced: the episode ends, the check is recorded green, nobody is mailed
    register(tenant_slug, admin_email=ADMIN)
    assert materialise(instance, tenant_slug).success
    with engine.connect() as conn:
        fresh_read = staleness.last_read(conn, tenant_slug)
    assert fresh_read is not None and fresh_read > read
    tick = evaluate(database, fresh_read + HOUR, LOG)
    assert tenant_slug in tick.ended and tenant_slug not in tick.stale
    [event] = [e for e in tick.events if e.partition == tenant_slug]
    assert event.passed
    assert len(mails_about(smtp_server, tenant_slug)) == 3

    # stale again later: a new episode, alerted at once (its last alert was under a day ago)
    again = fresh_read + 37 * HOUR
    assert again < first + 48 * HOUR
    evaluate(database, again, LOG)
    sent = mails_about(smtp_server, tenant_slug)
    assert sorted(rcpt[0] for rcpt, _ in sent[3:]) == sorted([OPS, ADMIN])
    assert "reminder" not in next(m for rcpt, m in sent[3:] if rcpt == [OPS]).get_content()


def test_a_tenant_synced_by_hand_only_turns_red_without_mail(
    engine, tenant_slug, database_url, smtp_server, monkeypatch
):
    monkeypatch.setenv("OPS_ALERT_EMAIL", OPS)
    save_tenant(engine, make_settings(tenant_slug, auto_sync=False, admin_email=ADMIN))
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        record_read(conn, tenant_slug, now - 40 * HOUR)
    tick = evaluate(Database(url=database_url), now, LOG)
    assert tenant_slug in tick.reported
    assert [e.passed for e in tick.events if e.partition == tenant_slug] == [False]
    assert mails_about(smtp_server, tenant_slug) == []


def test_the_sensor_itself_records_the_check_on_the_clock(
    engine, tenant_slug, database_url, monkeypatch, smtp_server, instance
):
    monkeypatch.delenv("OPS_ALERT_EMAIL", raising=False)
    assert tenant_staleness_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    save_tenant(engine, make_settings(tenant_slug))
    with engine.begin() as conn:
        record_read(conn, tenant_slug, dt.datetime.now(dt.UTC) - 37 * HOUR)
    context = dg.build_sensor_context(resources={"database": Database(url=database_url)})
    result = tenant_staleness_sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert result.skip_reason is not None and tenant_slug in result.skip_reason.skip_message
    [event] = [e for e in result.asset_events if getattr(e, "partition", None) == tenant_slug]
    assert isinstance(event, dg.AssetCheckEvaluation) and not event.passed
    # what the daemon does with it: recorded without a run, for the tenant's partition
    instance.report_runless_asset_event(event)
    [record] = instance.event_log_storage.get_asset_check_execution_history(CHECK_KEY, limit=1)
    assert record.status.value == "FAILED" and record.partition == tenant_slug
    assert mails_about(smtp_server, tenant_slug) == []  # no OPS_ALERT_EMAIL, no admin_email
