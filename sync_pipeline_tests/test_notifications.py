"""Graph change notifications end to end: the receiver on loopback over TLS (a CA of the
test's own, which the fake Graph verifies it with), real Postgres, the fake Graph over HTTPS
creating subscriptions and sending notifications and lifecycle events, and the sensors
evaluated with dg.build_sensor_context at an injected time."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import socket
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from sync_pipeline.notifications import state
from sync_pipeline.notifications.server import Receiver
from sync_pipeline_tests.support import loopback


@pytest.fixture(scope="module")
def receiver_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA file, certificate, key) for a receiver on 127.0.0.1."""
    return loopback.receiver_tls(tmp_path_factory.mktemp("receiver-tls"))


@pytest.fixture(scope="module")
def receiver(database_url: str, receiver_tls: tuple[Path, Path, Path]) -> Iterator[Receiver]:
    from sync_pipeline.core import db

    _, cert, key = receiver_tls
    with Receiver(lambda: db.engine(database_url), certfile=cert, keyfile=key) as running:
        yield running


def post(receiver: Receiver | None, ca: Path, url: str | None = None, **kw) -> requests.Response:
    """POST to the receiver (or `url`), trusting only the receiver's CA."""
    target = url or (receiver.url if receiver else "")
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(ca)
        return session.post(target, timeout=10, **kw)


def subscribe(engine: sa.Engine, tenant: str, resource: str = "users") -> tuple[str, str]:
    """A subscription row as the subscriptions sensor saves it: (id, clientState)."""
    sub_id, client_state = secrets.token_hex(8), secrets.token_urlsafe(32)
    with engine.begin() as conn:
        state.save(
            conn,
            tenant,
            resource,
            sub_id,
            client_state,
            "https://127.0.0.1/notifications",
            dt.datetime.now(dt.UTC) + dt.timedelta(days=20),
        )
    return sub_id, client_state


def dirty_marks(engine: sa.Engine, tenant: str) -> list[state.Dirty]:
    with engine.connect() as conn:
        return [d for d in state.dirty(conn) if d.tenant == tenant]


def change(sub_id: str, client_state: str, user_id: str = "u1") -> dict:
    return {
        "subscriptionId": sub_id,
        "clientState": client_state,
        "changeType": "updated",
        "resource": f"Users/{user_id}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.User",
            "@odata.id": f"Users/{user_id}",
            "id": user_id,
        },
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "tenantId": "00000000-0000-0000-0000-000000000001",
    }


def test_handshake_echoes_the_decoded_token(receiver, receiver_tls) -> None:
    token = "Validation: Testing client application reachability <&> 1+1"
    url = f"{receiver.url}?{urllib.parse.urlencode({'validationToken': token})}"
    answer = post(receiver, receiver_tls[0], url, data=b"")
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == "text/plain"
    assert answer.text == token


def test_valid_notification_marks_the_tenant_dirty(receiver, receiver_tls, engine, tenant_slug):
    sub_id, client_state = subscribe(engine, tenant_slug)
    body = {"value": [change(sub_id, client_state, "a"), change(sub_id, client_state, "b")]}
    answer = post(receiver, receiver_tls[0], json=body)
    assert answer.status_code == 202
    (mark,) = dirty_marks(engine, tenant_slug)
    assert (mark.notifications, mark.reason) == (2, "notification")
    with engine.connect() as conn:
        assert state.counts(conn, tenant_slug) == {"accepted": 2}


def test_forged_client_state_is_rejected_counted_and_marks_nothing(
    receiver, receiver_tls, engine, tenant_slug
) -> None:
    sub_id, client_state = subscribe(engine, tenant_slug)
    forged = change(sub_id, "not-" + client_state)
    answer = post(receiver, receiver_tls[0], json={"value": [forged]})
    assert answer.status_code == 403
    unknown = post(receiver, receiver_tls[0], json={"value": [change("nope", client_state)]})
    assert unknown.status_code == 403
    assert dirty_marks(engine, tenant_slug) == []
    with engine.connect() as conn:
        assert state.counts(conn, tenant_slug) == {"rejected": 1}
        assert state.counts(conn, state.UNKNOWN_TENANT).get("rejected", 0) >= 1
    assert client_state not in answer.text


def test_lifecycle_events_are_recorded_and_missed_marks_dirty(
    receiver, receiver_tls, engine, tenant_slug
) -> None:
    sub_id, client_state = subscribe(engine, tenant_slug)
    base = {
        "subscriptionId": sub_id,
        "clientState": client_state,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "tenantId": "00000000-0000-0000-0000-000000000001",
    }
    answer = post(
        receiver,
        receiver_tls[0],
        json={"value": [base | {"lifecycleEvent": "reauthorizationRequired"}]},
    )
    assert answer.status_code == 202
    assert dirty_marks(engine, tenant_slug) == []
    with engine.connect() as conn:
        assert (
            state.subscriptions(conn, tenant_slug)["users"].lifecycle == "reauthorizationRequired"
        )
    answer = post(receiver, receiver_tls[0], json={"value": [base | {"lifecycleEvent": "missed"}]})
    assert answer.status_code == 202
    (mark,) = dirty_marks(engine, tenant_slug)
    assert mark.reason == "missed"


def test_malformed_bodies_are_refused(receiver, receiver_tls) -> None:
    assert post(receiver, receiver_tls[0], data=b"{").status_code == 400
    assert post(receiver, receiver_tls[0], json={"value": []}).status_code == 400


# -- with the fake Graph: subscriptions, notifications on mutations, lifecycle events ---------


@pytest.fixture(scope="module")
def notify_doc() -> dict:
    from sync_pipeline.fakegraph import generate_tenant

    return generate_tenant(name="notify-test", users=40, seed=11, domain="notify.example")


@pytest.fixture(scope="module")
def notify_fake(notify_doc, receiver_tls, tmp_path_factory):
    """The fake Graph, verifying the receiver's TLS with the receiver's CA."""
    from sync_pipeline_tests.support.fakegraph import start_fake

    fake = start_fake(
        [notify_doc], tmp_path_factory.mktemp("notify-fake"), notification_ca=receiver_tls[0]
    )
    yield fake
    fake.stop()


@pytest.fixture
def subscribed(engine, notify_doc, notify_fake, receiver, tenant_slug, database_url):
    """A tenant with change_notifications on, its subscriptions created by the upkeep."""
    from sync_pipeline.defs.notifications import keep_subscriptions
    from sync_pipeline.defs.resources import Database
    from sync_pipeline_tests.support.fakegraph import register_tenant

    register_tenant(
        engine,
        tenant_slug,
        notify_doc,
        notify_fake,
        change_notifications=True,
        notification_url=receiver.url,
    )
    done = keep_subscriptions(Database(url=database_url), dt.datetime.now(dt.UTC))
    assert f"{tenant_slug}/users" in done.created and f"{tenant_slug}/groups" in done.created
    assert tenant_slug not in done.failed
    return tenant_slug


def stored(engine: sa.Engine, tenant: str) -> dict[str, state.Subscription]:
    with engine.connect() as conn:
        return state.subscriptions(conn, tenant)


def test_subscriptions_are_created_with_a_secret_stored_only_hashed(
    subscribed, engine, notify_doc, notify_fake
) -> None:
    subs = stored(engine, subscribed)
    assert set(subs) == {"users", "groups"}
    at_graph = {s["id"]: s for s in notify_fake.subscriptions(notify_doc["tenant_id"])}
    for sub in subs.values():
        graph_side = at_graph[sub.subscription_id]
        assert graph_side["changeType"] == "updated,deleted"
        assert graph_side["resource"] == sub.resource
        secret = graph_side["clientState"]
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT * FROM sync.graph_subscriptions WHERE subscription_id = :i"),
                {"i": sub.subscription_id},
            ).one()
        assert secret not in repr(tuple(row))
        assert bytes(row.client_state_hash) == state.digest(secret)


def test_a_receiver_that_fails_the_handshake_gets_no_subscription(
    engine, notify_doc, notify_fake, receiver, tenant_slug, database_url
) -> None:
    from sync_pipeline.defs.notifications import keep_subscriptions
    from sync_pipeline.defs.resources import Database
    from sync_pipeline_tests.support.fakegraph import register_tenant

    with socket.socket() as probe:  # a loopback port where nothing answers the handshake
        probe.bind(("127.0.0.1", 0))
        wrong = f"https://127.0.0.1:{probe.getsockname()[1]}/notifications"
    register_tenant(
        engine,
        tenant_slug,
        notify_doc,
        notify_fake,
        change_notifications=True,
        notification_url=wrong,
    )
    done = keep_subscriptions(Database(url=database_url), dt.datetime.now(dt.UTC))
    assert "ValidationError" in done.failed[tenant_slug]
    assert stored(engine, tenant_slug) == {}


def test_renewal_and_a_removed_subscription_recreated(
    subscribed, engine, notify_doc, notify_fake, database_url
) -> None:
    from sync_pipeline.defs.notifications import keep_subscriptions
    from sync_pipeline.defs.resources import Database

    database = Database(url=database_url)
    before = stored(engine, subscribed)
    with engine.begin() as conn:  # two days left: due for renewal
        conn.execute(
            sa.text(
                "UPDATE sync.graph_subscriptions SET expires_at = now() + interval '2 days' "
                "WHERE tenant = :t AND resource = 'groups'"
            ),
            {"t": subscribed},
        )
    done = keep_subscriptions(database, dt.datetime.now(dt.UTC))
    assert f"{subscribed}/groups" in done.renewed
    renewed = stored(engine, subscribed)["groups"]
    assert renewed.subscription_id == before["groups"].subscription_id
    assert renewed.expires_at - dt.datetime.now(dt.UTC) > dt.timedelta(days=27)

    notify_fake.remove_subscription(before["users"].subscription_id)
    delivered = notify_fake.deliveries()
    assert any(
        d["item"].get("lifecycleEvent") == "subscriptionRemoved" and d["status"] == 202
        for d in delivered
        if d["item"]["subscriptionId"] == before["users"].subscription_id
    )
    assert stored(engine, subscribed)["users"].lifecycle == "subscriptionRemoved"
    done = keep_subscriptions(database, dt.datetime.now(dt.UTC))
    assert f"{subscribed}/users" in done.created
    again = stored(engine, subscribed)["users"]
    assert again.subscription_id != before["users"].subscription_id
    assert again.lifecycle is None
    live = {s["id"] for s in notify_fake.subscriptions(notify_doc["tenant_id"])}
    assert again.subscription_id in live


def test_lifecycle_missed_from_graph_marks_dirty(subscribed, engine, notify_fake) -> None:
    notify_fake.emit_lifecycle(stored(engine, subscribed)["groups"].subscription_id, "missed")
    notify_fake.deliveries()
    (mark,) = dirty_marks(engine, subscribed)
    assert mark.reason == "missed"


def test_turning_notifications_off_deletes_the_subscriptions(
    subscribed, engine, notify_doc, notify_fake, receiver, database_url
) -> None:
    from sync_pipeline.defs.notifications import keep_subscriptions
    from sync_pipeline.defs.resources import Database
    from sync_pipeline_tests.support.fakegraph import register_tenant

    ids = {s.subscription_id for s in stored(engine, subscribed).values()}
    register_tenant(engine, subscribed, notify_doc, notify_fake, notification_url=receiver.url)
    done = keep_subscriptions(Database(url=database_url), dt.datetime.now(dt.UTC))
    assert sorted(done.deleted) == [f"{subscribed}/groups", f"{subscribed}/users"]
    assert stored(engine, subscribed) == {}
    live = {s["id"] for s in notify_fake.subscriptions(notify_doc["tenant_id"])}
    assert not ids & live


def test_a_disabled_user_leads_to_exactly_one_sync_after_the_debounce(
    subscribed, engine, notify_doc, notify_fake, receiver, receiver_tls, instance, database_url
) -> None:
    import dagster as dg

    from sync_pipeline.defs.notifications import notification_runs
    from sync_pipeline.defs.resources import Database
    from sync_pipeline_tests.support.pipeline import materialise

    database = Database(url=database_url)
    assert materialise(instance, subscribed, database_url=database_url).success
    notify_fake.deliveries()
    with engine.begin() as conn:  # what the first sync's own reads may have caused
        for mark in state.dirty(conn):
            if mark.tenant == subscribed:
                state.consume(conn, mark)

    def evaluate(now: dt.datetime) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(instance=instance, resources={"database": database})
        result = notification_runs(context, database, now)
        return [r for r in result.run_requests or [] if r.partition_key == subscribed]

    # a forged notification (wrong clientState) triggers nothing
    sub = stored(engine, subscribed)["users"]
    forged = post(receiver, receiver_tls[0], json={"value": [change(sub.subscription_id, "x")]})
    assert forged.status_code == 403
    assert evaluate(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)) == []

    # a burst: two users disabled in Graph, one notification each
    leavers = [u for u in notify_doc["users"] if u["accountEnabled"] and u["userType"] == "Member"]
    leavers = leavers[:2]
    for user in leavers:
        notify_fake.update_user(notify_doc["tenant_id"], user["id"], accountEnabled=False)
    delivered = [
        d for d in notify_fake.deliveries() if d["item"]["subscriptionId"] == sub.subscription_id
    ]
    assert {d["item"]["resourceData"]["id"] for d in delivered} >= {u["id"] for u in leavers}
    (mark,) = dirty_marks(engine, subscribed)
    assert mark.notifications >= 2

    assert evaluate(mark.last_at + dt.timedelta(seconds=10)) == []  # within the debounce
    (request,) = evaluate(mark.last_at + dt.timedelta(seconds=60))
    assert request.tags["trigger"] == "notification"
    assert request.tags["tenant"] == subscribed
    assert dirty_marks(engine, subscribed) == []
    assert evaluate(mark.last_at + dt.timedelta(seconds=120)) == []  # consumed: once

    # while a run of the tenant is going, a new mark waits for it
    queued = dg.DagsterRun(
        job_name="sync",
        run_id=str(uuid.uuid4()),
        tags={"tenant": subscribed},
        status=dg.DagsterRunStatus.STARTED,
    )
    instance.add_run(queued)
    with engine.begin() as conn:
        state.mark_dirty(conn, subscribed, mark.last_at, "notification")
    assert evaluate(mark.last_at + dt.timedelta(minutes=5)) == []
    assert len(dirty_marks(engine, subscribed)) == 1
    instance.delete_run(queued.run_id)
    assert len(evaluate(mark.last_at + dt.timedelta(minutes=5))) == 1

    # the run the sensor asked for: an ordinary sync, whose delta read finds the leavers
    result = materialise(instance, subscribed, database_url=database_url, tags=request.tags)
    assert result.success
    with engine.connect() as conn:
        active = dict(
            conn.execute(
                sa.text("SELECT external_id, is_active FROM app.users WHERE tenant = :t"),
                {"t": subscribed},
            ).all()
        )
    assert all(active[u["id"]] is False for u in leavers)
    for user in leavers:  # the module's tenant document is shared: put them back
        notify_fake.update_user(notify_doc["tenant_id"], user["id"], accountEnabled=True)


def test_with_the_receiver_down_the_interval_sync_still_catches_the_change(
    engine, notify_doc, notify_fake, tenant_slug, instance, database_url
) -> None:
    """Notifications are a trigger, never the only one: with the receiver down no subscription
    can be made (Graph's handshake fails), and the tenant's intraday interval sync, requested
    by the schedule, reads the change through delta as any sync does."""
    import dagster as dg

    from sync_pipeline.definitions import defs
    from sync_pipeline.defs.automation import daily_tenant_syncs
    from sync_pipeline.defs.notifications import keep_subscriptions
    from sync_pipeline.defs.partitions import TENANT_PARTITIONS
    from sync_pipeline.defs.resources import Database
    from sync_pipeline_tests.support.fakegraph import register_tenant
    from sync_pipeline_tests.support.pipeline import materialise

    database = Database(url=database_url)
    down = f"https://127.0.0.1:{free_port()}/graph"  # nothing listens there
    register_tenant(
        engine,
        tenant_slug,
        notify_doc,
        notify_fake,
        change_notifications=True,
        notification_url=down,
        sync_interval=5,
    )
    done = keep_subscriptions(database, dt.datetime.now(dt.UTC))
    assert tenant_slug in done.failed and not stored(engine, tenant_slug)
    assert materialise(instance, tenant_slug, database_url=database_url).success
    leaver = next(
        u for u in notify_doc["users"] if u["accountEnabled"] and u["userType"] == "Member"
    )
    notify_fake.update_user(notify_doc["tenant_id"], leaver["id"], accountEnabled=False)
    try:
        assert dirty_marks(engine, tenant_slug) == []  # nothing could tell the engine
        if tenant_slug not in instance.get_dynamic_partitions(TENANT_PARTITIONS):
            instance.add_dynamic_partitions(TENANT_PARTITIONS, [tenant_slug])
        now = dt.datetime.now(dt.UTC)
        tick = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
        requests_ = []
        for at in (tick + dt.timedelta(minutes=5 * i) for i in range(1, 3)):
            context = dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=at,
                resources={"database": database},
                repository_def=defs.get_repository_def(),
            )
            result = daily_tenant_syncs.evaluate_tick(context)
            requests_ += [r for r in result.run_requests or [] if r.partition_key == tenant_slug]
        assert requests_, "the interval schedule requested no sync"
        assert requests_[0].tags["trigger"] == "schedule"
        synced = materialise(
            instance, tenant_slug, database_url=database_url, tags=requests_[0].tags
        )
        assert synced.success
        with engine.connect() as conn:
            active = conn.execute(
                sa.text("SELECT is_active FROM app.users WHERE tenant = :t AND external_id = :id"),
                {"t": tenant_slug, "id": leaver["id"]},
            ).scalar_one()
        assert active is False
    finally:  # the module's tenant document is shared: put the leaver back
        notify_fake.update_user(notify_doc["tenant_id"], leaver["id"], accountEnabled=True)


def test_change_notifications_need_an_https_notification_url() -> None:
    from sync_pipeline.core.settings import SettingsError, parse_settings

    base = {
        "slug": "acme",
        "tenant_id": "00000000-0000-0000-0000-000000000001",
        "client_id": "00000000-0000-0000-0000-000000000002",
        "client_secret_env": "ACME_SECRET",
    }
    with pytest.raises(SettingsError, match="tenant acme: change_notifications is true but "):
        parse_settings(base | {"change_notifications": True})
    with pytest.raises(
        SettingsError, match=re.escape("tenant acme: notification_url 'http://n.example/g'")
    ):
        parse_settings(
            base | {"change_notifications": True, "notification_url": "http://n.example/g"}
        )
    ok = parse_settings(
        base | {"change_notifications": True, "notification_url": "https://n.example/g"}
    )
    assert ok.notification_url == "https://n.example/g"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_serve_command_answers_the_handshake_over_tls(receiver_tls, database_url) -> None:
    """`sync-pipeline notifications serve` as an operator runs it: a process of its own on
    loopback, ended by SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    from sync_pipeline_tests.support.waiting import wait_until

    ca, cert, key = receiver_tls
    port = free_port()
    args = ["notifications", "serve", "--port", str(port), "--tls-cert", str(cert)]
    child = subprocess.Popen(
        [sys.executable, "-m", "sync_pipeline.cli", *args, "--tls-key", str(key)],
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"https://127.0.0.1:{port}/notifications"

    def up() -> bool:
        assert child.poll() is None, child.communicate()[0]
        try:
            with requests.Session() as s:
                s.trust_env, s.verify = False, str(ca)
                return s.get(url.replace("/notifications", "/healthz"), timeout=2).ok
        except requests.RequestException:
            return False

    try:
        wait_until(up, 60, "the receiver to listen")
        answer = post(None, ca, f"{url}?validationToken=abc%20def", data=b"")
        assert (answer.status_code, answer.text) == (200, "abc def")
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            output = child.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            child.kill()
            raise
    # uvicorn ends in order, then re-raises the signal it caught (as a process killed by it)
    assert child.returncode in (0, -signal.SIGTERM), output
    assert "Finished server process" in output
    assert f"https://127.0.0.1:{port}/" in output


def test_the_fake_refuses_a_receiver_it_cannot_trust_or_that_answers_wrong(
    engine, notify_doc, notify_fake, receiver, receiver_tls, tenant_slug, tmp_path
) -> None:
    """Graph's side of the handshake: a certificate not signed by the CA the fake is given, or
    an answer that is not the token, refuses the subscription (400 ValidationError)."""
    import http.server
    import ssl
    import threading

    from sync_pipeline.fakegraph.wire import GraphError
    from sync_pipeline_tests.support.fakegraph import start_fake

    untrusting = start_fake([notify_doc], tmp_path / "fake")  # the system's CAs only
    try:
        with pytest.raises(GraphError) as refused:
            untrusting._validate_endpoint(receiver.url)
        assert refused.value.code == "ValidationError"
    finally:
        untrusting.stop()

    class Wrong(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # answers, but not with the token
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Wrong)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(receiver_tls[1], receiver_tls[2])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(GraphError) as refused:
            notify_fake._validate_endpoint(f"https://127.0.0.1:{server.server_port}/n")
        assert refused.value.code == "ValidationError"
        notify_fake._validate_endpoint(receiver.url)  # the real receiver passes
    finally:
        server.shutdown()


def test_a_subscription_needs_the_permission_to_read_its_resource(
    engine, notify_doc, notify_fake, receiver, tenant_slug, database_url
) -> None:
    from sync_pipeline.defs.notifications import keep_subscriptions
    from sync_pipeline.defs.resources import Database
    from sync_pipeline_tests.support.fakegraph import register_tenant

    register_tenant(
        engine,
        tenant_slug,
        notify_doc,
        notify_fake,
        change_notifications=True,
        notification_url=receiver.url,
    )
    notify_fake.withdraw_permissions(notify_doc["tenant_id"], ["User.Read.All"])
    try:
        done = keep_subscriptions(Database(url=database_url), dt.datetime.now(dt.UTC))
    finally:
        notify_fake.grant_permissions(notify_doc["tenant_id"], ["User.Read.All"])
    assert "Authorization_RequestDenied" in done.failed[tenant_slug]
    assert "users" not in stored(engine, tenant_slug)
    done = keep_subscriptions(Database(url=database_url), dt.datetime.now(dt.UTC))
    assert tenant_slug not in done.failed
    assert set(stored(engine, tenant_slug)) == {"users", "groups"}


def test_sigterm_lets_a_notification_in_flight_finish(
    receiver_tls, database_url, engine, tenant_slug
) -> None:
    """A rollout's SIGTERM while a POST is being recorded: the receiver stops accepting, the
    request in flight commits and is answered 202, then the process exits (Graph retries
    only what got no answer)."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from sync_pipeline_tests.support.waiting import wait_until

    ca, cert, key = receiver_tls
    sub_id, client_state = subscribe(engine, tenant_slug)
    with engine.begin() as conn:
        state.mark_dirty(conn, tenant_slug, dt.datetime.now(dt.UTC), "notification")
    port = free_port()
    args = ["notifications", "serve", "--port", str(port), "--tls-cert", str(cert)]
    child = subprocess.Popen(
        [sys.executable, "-m", "sync_pipeline.cli", *args, "--tls-key", str(key)],
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(child.stdout.readline, "")))
    reader.start()
    url = f"https://127.0.0.1:{port}/notifications"
    answers: list[requests.Response | BaseException] = []

    def notify() -> None:
        try:
            answers.append(post(None, ca, url, json={"value": [change(sub_id, client_state)]}))
        except requests.RequestException as exc:
            answers.append(exc)

    def up() -> bool:
        assert child.poll() is None, "".join(lines)
        try:
            with requests.Session() as s:
                s.trust_env, s.verify = False, str(ca)
                return s.get(f"https://127.0.0.1:{port}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    blocker = engine.connect()
    try:
        wait_until(up, 60, "the receiver to listen")
        held = blocker.begin()
        blocker.execute(  # the tenant's mark, locked: the receiver's write waits for it
            sa.text("SELECT 1 FROM sync.dirty_tenants WHERE tenant = :t FOR UPDATE"),
            {"t": tenant_slug},
        )
        sender = threading.Thread(target=notify)
        sender.start()
        blocked = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE :me = ANY(pg_blocking_pids(pid))"
        )
        me = blocker.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as probe:
            wait_until(
                lambda: probe.execute(blocked, {"me": me}).scalar_one(), 30, "the write to wait"
            )
        child.send_signal(signal.SIGTERM)
        wait_until(lambda: any("Shutting down" in line for line in lines), 30, "the shutdown")
        assert child.poll() is None and not answers  # still answering the one in flight
        held.commit()
        sender.join(timeout=30)
        child.wait(timeout=30)
    finally:
        blocker.close()
        if child.poll() is None:
            child.kill()
        reader.join(timeout=10)
    output = "".join(lines)
    assert child.returncode in (0, -signal.SIGTERM), output
    (answer,) = answers
    assert isinstance(answer, requests.Response) and answer.status_code == 202, answer
    (mark,) = dirty_marks(engine, tenant_slug)
    assert mark.notifications == 2  # the one before, and the one in flight
    assert "Finished server process" in output


def test_a_dropped_database_connection_costs_no_notification(
    receiver, receiver_tls, engine, tenant_slug
) -> None:
    """A failover or a restart of Postgres drops the receiver's pooled connections: the next
    POST reconnects (the pool pings first) instead of answering 503 with a dead one."""
    sub_id, client_state = subscribe(engine, tenant_slug)
    body = {"value": [change(sub_id, client_state)]}
    assert post(receiver, receiver_tls[0], json=body).status_code == 202
    outside = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)  # not of the pool
    with outside.connect() as conn:
        dropped = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
        ).scalar_one()
    outside.dispose()
    assert dropped >= 1  # every pooled connection, the receiver's among them
    assert post(receiver, receiver_tls[0], json=body).status_code == 202
    (mark,) = dirty_marks(engine, tenant_slug)
    assert mark.notifications == 2


def test_health_answers_without_the_database_and_notifications_get_503(
    receiver_tls, engine, tenant_slug
) -> None:
    """GET /healthz (the compose and Kubernetes probes) never touches the database: with the
    database unreachable the receiver stays in service and answers Graph 503 (Graph retries)
    instead of being taken out by its probe."""
    from sync_pipeline.core import db

    ca, cert, key = receiver_tls
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"  # nothing listens
    sub_id, client_state = subscribe(engine, tenant_slug)
    with Receiver(lambda: db.engine(nowhere), certfile=cert, keyfile=key) as down:
        health = f"{down.url.removesuffix('/notifications')}/healthz"
        with requests.Session() as session:
            session.trust_env, session.verify = False, str(ca)
            answer = session.get(health, timeout=10)
        assert (answer.status_code, answer.text) == (200, "ok")
        body = {"value": [change(sub_id, client_state)]}
        assert post(down, ca, json=body).status_code == 503
    assert dirty_marks(engine, tenant_slug) == []


def test_a_change_waits_at_most_the_debounce_however_many_follow() -> None:
    """A mark is due once its first notification is a debounce old: the notifications of
    that window become one sync, and a stream of them (a bulk import) never puts it off."""
    first = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC)
    debounce = dt.timedelta(seconds=60)

    def mark(last_after: float) -> state.Dirty:
        last = first + dt.timedelta(seconds=last_after)
        return state.Dirty("acme", first, last, 5, "notification")

    def at(seconds: float) -> dt.datetime:
        return first + dt.timedelta(seconds=seconds)

    assert not mark(0).due(debounce, at(seconds=59))
    assert mark(0).due(debounce, at(seconds=60))
    assert mark(55).due(debounce, at(seconds=60))  # one 5 s ago: still due, not put off
    assert not mark(30).due(debounce, at(seconds=45))  # the window is still open
    assert mark(0).due(dt.timedelta(0), first)  # no debounce: at once
