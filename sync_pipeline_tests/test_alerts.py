"""Failure alerts to ops and quarantine notices to admins, over a real SMTP server."""

import dagster as dg
import sqlalchemy as sa

from sync_pipeline.defs.alerts import sync_failure_alerts
from sync_pipeline.defs.automation import quarantined
from sync_pipeline.defs.extract import extract_assets
from sync_pipeline.defs.resources import Database
from sync_pipeline.report import mail
from sync_pipeline_tests.support.pipeline import materialise


def evaluate(result, instance, database_url):
    context = dg.build_run_status_sensor_context(
        sensor_name=sync_failure_alerts.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"database": Database(url=database_url)},
    ).for_run_failure()
    sync_failure_alerts(context)


def test_failed_sync_alerts_ops_then_quarantines_and_tells_the_admin(
    register, tenant_slug, monkeypatch, smtp_server, database_url, engine
):
    monkeypatch.setenv("OPS_ALERT_EMAIL", "ops@example.test")
    monkeypatch.setenv("SP_EXPIRED_SECRET", "expired-secret")
    register(tenant_slug, client_secret_env="SP_EXPIRED_SECRET", admin_email="it@fabrikam.test")
    admin_notices = []
    with dg.instance_for_test() as instance:
        for _ in range(3):
            before = len(smtp_server.messages)
            result = materialise(instance, tenant_slug, raise_on_error=False)
            assert not result.success
            evaluate(result, instance, database_url)
            (rcpt, alert), *to_admin = smtp_server.messages[before:]
            assert rcpt == ["ops@example.test"]
            body = alert.get_content()
            assert tenant_slug in alert["Subject"]
            assert any(f"step:        {a.node_def.name}" in body for a in extract_assets)
            assert "invalid_client" in body and "AADSTS7000215" in body
            assert f"/runs/{result.run_id}" in body
            assert "expired-secret" not in body
            admin_notices.append(to_admin)
    # a refused sign-in does not heal: the admin is told at the first failure, not the third
    first, second, third = admin_notices
    [(rcpt, notice)] = first
    assert rcpt == ["it@fabrikam.test"] and "action needed" in notice["Subject"]
    assert "AADSTS7000215" in notice.get_content() and "expired-secret" not in notice.get_content()
    assert f"sync-pipeline doctor {tenant_slug}" in notice.get_content()
    assert second == []
    [(admin_rcpt, notice)] = third
    assert admin_rcpt == ["it@fabrikam.test"]
    assert "paused" in notice["Subject"] and "manual sync" in notice.get_content()
    assert len(smtp_server.messages) == 5  # three alerts, the first-failure and pause notices
    assert tenant_slug in quarantined(Database(url=database_url))

    # a successful manual sync lifts the quarantine
    register(tenant_slug, admin_email="it@fabrikam.test")
    with dg.instance_for_test() as instance:
        ok = materialise(instance, tenant_slug, tags={"trigger": "manual"})
    assert ok.success
    assert tenant_slug not in quarantined(Database(url=database_url))
    with engine.connect() as conn:
        statuses = (
            conn.execute(
                sa.text("SELECT status FROM sync.runs WHERE tenant = :t ORDER BY id"),
                {"t": tenant_slug},
            )
            .scalars()
            .all()
        )
    assert statuses == ["failed", "failed", "failed", "success"]


def test_without_smtp_host_the_message_is_written_as_eml(monkeypatch, sync_home):
    monkeypatch.delenv("SMTP_HOST", raising=False)
    where = mail.send(mail.build(to="a@example.test", subject="Hello there", text="body"))
    assert where.endswith(".eml") and sync_home in where
    assert b"Subject: Hello there" in open(where, "rb").read()
