"""Credential and permission health (graph/health.py): `sync-pipeline doctor`, the check at
the start of every sync, and the daily expiry alerts, against a fake Graph of this module's
own (its permissions and secret expiry are changed here) and a real SMTP server."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.defs.alerts import examine_and_alert
from sync_pipeline.defs.resources import Database
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.graph import health
from sync_pipeline_tests.support.fakegraph import register_tenant, start_fake
from sync_pipeline_tests.support.pipeline import materialise


@pytest.fixture(scope="module")
def doc():
    return generate_tenant(name="doctor-test", users=30, seed=17, domain="doctor.example")


@pytest.fixture(scope="module")
def fake(doc, tmp_path_factory):
    server = start_fake([doc], tmp_path_factory.mktemp("fakegraph-doctor"))
    yield server
    server.stop()


@pytest.fixture
def tenant(engine, doc, fake, tenant_slug):
    """A tenant of this module's fake, every permission back and the secret's default expiry
    when the test ends (the fake is shared by the module's tests)."""
    register_tenant(engine, tenant_slug, doc, fake, include_groups=True, admin_email="it@d.test")
    yield tenant_slug
    fake.grant_permissions(doc["tenant_id"], ["GroupMember.Read.All", "User.Read.All"])
    fake.withdraw_permissions(doc["tenant_id"], [health.APPLICATION_READ])
    fake.set_secret_expiry(doc["tenant_id"], None)


def findings(cli, tenant: str) -> tuple[int, dict[str, dict]]:
    result = cli("doctor", tenant, "--json")
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return result.exit_code, {r["check"]: r for r in rows}


def test_doctor_names_a_withdrawn_permission_with_its_setting_then_passes(cli, tenant, doc, fake):
    code, found = findings(cli, tenant)
    assert code == 0, found
    assert found["sign-in"]["status"] == "ok"
    for permission in ("User.Read.All", "GroupMember.Read.All", "Organization.Read.All"):
        assert found[f"permission {permission}"]["status"] == "ok"
    # without Application.Read.All and without the setting, the expiry is unknown (not a fail)
    assert found["client secret"]["status"] == "unknown"
    assert "client_secret_expires_at" in found["client secret"]["detail"]
    assert found["clock"]["status"] == "ok"

    fake.withdraw_permissions(doc["tenant_id"], ["GroupMember.Read.All"])
    code, found = findings(cli, tenant)
    assert code == 1
    missing = found["permission GroupMember.Read.All"]
    assert missing["status"] == "fail"
    assert "roles" in missing["detail"] and "include_groups: true" in missing["detail"]
    table = cli("doctor", tenant)
    assert table.exit_code == 1 and "GroupMember.Read.All" in table.output

    fake.grant_permissions(doc["tenant_id"], ["GroupMember.Read.All"])
    assert findings(cli, tenant)[0] == 0


def test_doctor_reads_the_secret_expiry_from_graph_and_warns_within_30_days(cli, tenant, doc, fake):
    fake.grant_permissions(doc["tenant_id"], [health.APPLICATION_READ])
    code, found = findings(cli, tenant)
    assert code == 0 and found["client secret"]["status"] == "ok"
    assert "the app registration" in found["client secret"]["detail"]
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    fake.set_secret_expiry(doc["tenant_id"], soon.timestamp())
    code, found = findings(cli, tenant)
    assert code == 5, found  # only a warning: the sync still works
    assert found["client secret"]["status"] == "warn"
    assert found["client secret"]["expires_at"].startswith(soon.date().isoformat())


def test_an_expired_secret_fails_the_sign_in_with_its_aadsts_code(cli, tenant, doc, fake):
    fake.set_secret_expiry(doc["tenant_id"], 1.0)
    code, found = findings(cli, tenant)
    assert code == 1
    assert found["sign-in"]["status"] == "fail"
    assert "AADSTS7000222" in found["sign-in"]["detail"]
    assert "permission User.Read.All" not in found  # no token, no permission verdicts


def test_a_sync_fails_before_any_read_naming_the_missing_permission(tenant, doc, fake):
    fake.withdraw_permissions(doc["tenant_id"], ["GroupMember.Read.All"])
    fake.reset_stats()
    with dg.instance_for_test() as instance:
        result = materialise(instance, tenant, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "GroupMember.Read.All" in message and "include_groups: true" in message
    assert "admin consent" in message
    reads = {k: n for k, n in fake.stats["requests"].items() if "/v1.0/" in k}
    assert reads == {}  # not one Graph read was made
    attempts = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert attempts == []  # not retried


def test_expiry_alerts_go_to_ops_and_the_admin_once_per_threshold(
    engine, doc, fake, tenant, database_url, smtp_server, monkeypatch
):
    monkeypatch.setenv("OPS_ALERT_EMAIL", "ops@d.test")
    now = dt.datetime.now(dt.UTC)
    register_tenant(
        engine,
        tenant,
        doc,
        fake,
        include_groups=True,
        admin_email="it@d.test",
        client_secret_expires_at=(now + dt.timedelta(days=10)).isoformat(),
    )
    database = Database(url=database_url)

    def sent_to(tenant_only: bool = True) -> list[tuple[list[str], str]]:
        return [
            (rcpt, msg["Subject"])
            for rcpt, msg in smtp_server.messages
            if not tenant_only or tenant in msg["Subject"]
        ]

    examine_and_alert(database, now, only=[tenant])
    first = sent_to()
    assert sorted(r for r, _ in first) == [["it@d.test"], ["ops@d.test"]]
    assert all("within 14 days" in s for _, s in first)
    body = smtp_server.messages[-1][1].get_content()
    assert "client_secret_expires_at" in body and f"sync-pipeline doctor {tenant}" in body
    # the next day: still within 14 days, already told
    examine_and_alert(database, now + dt.timedelta(hours=25), only=[tenant])
    assert sent_to() == first
    # four days later: within 7 days, told again, once
    examine_and_alert(database, now + dt.timedelta(days=4), only=[tenant])
    later = sent_to()[len(first) :]
    assert sorted(r for r, _ in later) == [["it@d.test"], ["ops@d.test"]]
    assert all("within 7 days" in s for _, s in later)
    # examined about daily, not at every tick
    examine_and_alert(database, now + dt.timedelta(days=4, hours=1), only=[tenant])
    assert len(sent_to()) == len(first) + len(later)


def test_a_tenant_whose_sign_in_host_is_down_never_stops_the_others_checks(
    engine, doc, fake, tenant, database_url, smtp_server, monkeypatch
):
    """msal looks the authority up as the client is made: a closed port used to raise out of
    the health sensor's tick, and no tenant after it was examined."""
    monkeypatch.setenv("OPS_ALERT_EMAIL", "ops@d.test")
    now = dt.datetime.now(dt.UTC)
    down = f"{tenant}-down"
    register_tenant(
        engine, down, doc, fake, graph_base_url="https://127.0.0.1:9",
        authority_host="https://127.0.0.1:9",
    )  # fmt: skip
    register_tenant(
        engine, tenant, doc, fake, admin_email="it@d.test",
        client_secret_expires_at=(now + dt.timedelta(days=10)).isoformat(),
    )  # fmt: skip
    examined, sent = examine_and_alert(Database(url=database_url), now, only=[down, tenant])
    assert (examined, sent) == (2, 2)
    with engine.connect() as conn:
        status, found = conn.execute(
            sa.text("SELECT status, findings FROM sync.health_checks WHERE tenant = :t"),
            {"t": down},
        ).one()
    assert status == health.FAIL
    assert [f["check"] for f in found] == ["sign-in"] and "did not answer" in found[0]["detail"]
