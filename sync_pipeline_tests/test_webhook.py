"""Issue 18's webhook: the `event_deliveries` sensor posts a tenant's outbox events to an
HTTPS receiver on loopback (its own CA), signed; an injected 500 is retried after the
backoff and every event is taken once, in order; dead letters and the retention."""

from __future__ import annotations

import os
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.core.settings import SettingsError, parse_settings
from sync_pipeline.defs.outbox import event_deliveries
from sync_pipeline.defs.resources import Database
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.outbox import delivery
from sync_pipeline_tests.support.events import events, validate
from sync_pipeline_tests.support.fakegraph import new_tenant, start_fake
from sync_pipeline_tests.support.pipeline import materialise
from sync_pipeline_tests.support.webhook import start_receiver

SECRET_ENV = "SP_TEST_WEBHOOK_SECRET"
SECRET = "webhook-secret-for-tests"


@pytest.fixture
def doc() -> dict:
    return generate_tenant(name="hooks", users=25, seed=19, domain="hooks.example")


@pytest.fixture
def fake(doc, tmp_path_factory):
    graph = start_fake([doc], tmp_path_factory.mktemp("fakegraph-hooks"))
    yield graph
    graph.stop()


@pytest.fixture
def receiver(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    hook = start_receiver(tmp_path / "tls", SECRET.encode())
    yield hook
    hook.stop()


def tick(database_url: str, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        resources={"database": Database(url=database_url)}, cursor=cursor
    )
    result = event_deliveries(context)
    assert isinstance(result, dg.SensorResult)
    return result


def reason(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def observed(result: dg.SensorResult, tenant: str) -> dict:
    found = [o for o in result.asset_events or [] if getattr(o, "partition", None) == tenant]
    assert len(found) == 1, result.asset_events
    return {k: v.value for k, v in found[0].metadata.items()}


def test_each_event_reaches_the_webhook_once_after_a_500_and_a_retry(
    instance, database_url, engine, doc, fake, receiver
):
    slug = new_tenant(
        engine,
        "hook",
        doc,
        fake,
        webhook_url=receiver.url,
        webhook_secret_env=SECRET_ENV,
        webhook_ca_bundle=str(receiver.ca_file),
    )
    result = materialise(instance, slug, database_url=database_url)
    assert result.success
    written = events(engine, slug)
    assert len(written) > 20

    receiver.answers = [500]
    first = tick(database_url)
    state = observed(first, slug)
    assert state["webhook_retrying"] is True and state["webhook_last_error"] == "HTTP 500"
    assert state["webhook_pending"] == len(written) and state["webhook_delivered"] == 0
    assert f"{slug}: 0 delivered" in reason(first)
    assert [r.status for r in receiver.received] == [500]

    tick(database_url)  # within the backoff: nothing is posted
    assert len(receiver.received) == 1
    with engine.begin() as conn:  # the backoff has passed
        conn.execute(
            sa.text("UPDATE sync.event_cursor SET next_attempt_at = now() WHERE tenant = :t"),
            {"t": slug},
        )
    done = observed(tick(database_url), slug)
    assert done["webhook_delivered"] == len(written) and done["webhook_pending"] == 0
    assert receiver.bad_signatures == 0
    # each event taken once, in order; the retry is the same event under a new delivery id
    assert receiver.accepted_ids() == [e["id"] for e in written]
    failed, retried = receiver.received[0], receiver.received[1]
    assert failed.event_id == retried.event_id and failed.delivery != retried.delivery
    assert [validate(r.event) for r in receiver.received[1:]] == written

    # nothing new, nothing posted; a later sync's events follow on their own
    quiet = tick(database_url)
    assert slug not in {getattr(o, "partition", None) for o in quiet.asset_events or []}
    assert len(receiver.received) == len(written) + 1
    fake.add_user(
        doc["tenant_id"],
        {"displayName": "New Hire", "userPrincipalName": "new.hire@hooks.example",
         "mail": "new.hire@hooks.example"},
    )  # fmt: skip
    assert materialise(instance, slug, database_url=database_url).success
    (joiner,) = events(engine, slug, written[-1]["id"])
    assert observed(tick(database_url), slug)["webhook_delivered"] == 1
    assert receiver.accepted_ids()[-1] == joiner["id"]


def test_dead_letters_and_retention_never_delete_an_undelivered_event(
    instance, database_url, engine, doc, fake, receiver
):
    slug = new_tenant(
        engine,
        "hookd",
        doc,
        fake,
        webhook_url=receiver.url,
        webhook_secret_env=SECRET_ENV,
        webhook_ca_bundle=str(receiver.ca_file),
        event_retention_days=7,
    )
    assert materialise(instance, slug, database_url=database_url).success
    written = events(engine, slug)
    receiver.always = 503
    tick(database_url)
    # the 10th attempt: given up, kept as a dead letter, and the next events go on
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE sync.event_cursor SET attempts = :a, next_attempt_at = now()"
                " WHERE tenant = :t"
            ),
            {"t": slug, "a": delivery.MAX_ATTEMPTS - 1},
        )
    receiver.answers, receiver.always = [503], 200
    result = tick(database_url)
    state = observed(result, slug)
    assert state["webhook_dead_letters"] == 1
    assert state["webhook_first_dead_letter"] == written[0]["id"]
    assert state["webhook_pending"] == 0
    assert "1 dead letter(s)" in reason(result)
    assert receiver.accepted_ids() == [e["id"] for e in written[1:]]

    # every event is older than the retention; one more is written and not delivered yet
    fake.add_user(
        doc["tenant_id"],
        {"displayName": "Late", "userPrincipalName": "late@hooks.example",
         "mail": "late@hooks.example"},
    )  # fmt: skip
    assert materialise(instance, slug, database_url=database_url).success
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE sync.events SET created_at = now() - interval '8 days' WHERE tenant = :t"
            ),
            {"t": slug},
        )
        settings = Database(url=database_url).tenant_settings(slug)
        deleted = delivery.retention(conn, settings)
    kept = [e["id"] for e in events(engine, slug)]
    assert deleted == len(written) - 1  # the delivered ones only
    assert kept == [written[0]["id"], kept[-1]] and kept[-1] > written[-1]["id"]


def test_an_unset_webhook_secret_is_named_and_nothing_is_posted(
    instance, database_url, engine, doc, fake, receiver
):
    slug = new_tenant(
        engine,
        "hooks",
        doc,
        fake,
        webhook_url=receiver.url,
        webhook_secret_env="SP_TEST_WEBHOOK_UNSET",
        webhook_ca_bundle=str(receiver.ca_file),
    )
    assert "SP_TEST_WEBHOOK_UNSET" not in os.environ
    assert materialise(instance, slug, database_url=database_url).success
    result = tick(database_url)
    assert "SP_TEST_WEBHOOK_UNSET (webhook_secret_env) is not set" in reason(result)
    assert receiver.received == []


def test_without_a_webhook_the_retention_deletes_every_old_event(
    instance, database_url, engine, doc, fake
):
    slug = new_tenant(engine, "hookr", doc, fake, event_retention_days=3)
    assert materialise(instance, slug, database_url=database_url).success
    written = events(engine, slug)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE sync.events SET created_at = now() - interval '4 days'"
                " WHERE tenant = :t AND id <= :last"
            ),
            {"t": slug, "last": written[-2]["id"]},
        )
        deleted = delivery.retention(conn, Database(url=database_url).tenant_settings(slug))
    assert deleted == len(written) - 1
    assert events(engine, slug) == written[-1:]  # the one within the retention stays


def test_a_webhook_needs_https_and_a_secret_variable():
    base = {"slug": "acme", "tenant_id": str(uuid.UUID(int=0)), "client_id": str(uuid.UUID(int=0))}
    base["client_secret_env"] = "ACME_SECRET"
    with pytest.raises(SettingsError, match="webhook_secret_env is not"):
        parse_settings(base | {"webhook_url": "https://app.example.com/hook"})
    with pytest.raises(SettingsError, match=r"webhook_url .* must be an https:// URL"):
        parse_settings(base | {"webhook_url": "http://app.example.com/hook",
                               "webhook_secret_env": "ACME_HOOK"})  # fmt: skip
    ok = parse_settings(
        base | {"webhook_url": "https://app.example.com/hook", "webhook_secret_env": "ACME_HOOK"}
    )
    assert (ok.webhook_url, ok.event_retention_days) == ("https://app.example.com/hook", 30)
