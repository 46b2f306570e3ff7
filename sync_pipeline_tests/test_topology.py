"""The production topology, as separate processes on one machine, all from the installed wheel.

What Dagster's Helm chart and the compose file in deploy/ run: a gRPC code server loading
`sync_pipeline.definitions`, a webserver and a daemon that load the location from it through
deploy/workspace.yaml, and one Postgres holding the Dagster instance (the packaged dagster.yaml)
and the data. A tenant served by the bundled fake Graph is registered with the wheel's CLI; the
daemon's `daily_tenant_syncs` schedule requests its sync, the run queue dequeues it and the run
launcher starts it through the code server; the run succeeds and `app.*` holds the tenant's
in-scope users.

The receiver of Graph change notifications (`sync-pipeline notifications serve`) runs beside
them, over TLS on loopback. The tenant has change_notifications on, its notification_url the
receiver: the daemon's subscription sensor subscribes through the fake Graph (whose handshake
reaches the receiver), a user disabled in the fake is notified to the receiver, which marks
the tenant dirty, and the daemon's debounced sensor launches a sync through the code server
that deactivates the user.

Nothing reaches an address but loopback: every URL the test configures is checked, and the
processes it starts run with a guard (support/loopback.py) that refuses any other connection
and records it; the test fails on any record.

The wheel's venv comes from SYNC_PIPELINE_DEPLOY_VENV (.ci/run builds the wheel and installs it
outside the checkout). Without it the test is skipped, unless SYNC_PIPELINE_REQUIRE_DEPLOY=1
(CI) makes that a failure. To run it locally:

    pip wheel --no-deps -w /tmp/sp-wheel . && python3 -m venv /tmp/sp-venv
    /tmp/sp-venv/bin/pip install /tmp/sp-wheel/sync_pipeline-*.whl
    SYNC_PIPELINE_DEPLOY_VENV=/tmp/sp-venv pytest sync_pipeline_tests/test_topology.py
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sync_pipeline.core import db
from sync_pipeline.notifications import state
from sync_pipeline_tests.conftest import FAKE_SECRET, FAKE_SECRET_ENV
from sync_pipeline_tests.support import loopback
from sync_pipeline_tests.support.fakegraph import expected_in_scope, start_fake
from sync_pipeline_tests.support.processes import Service, free_port, wait_for
from sync_pipeline_tests.support.topology import (
    LOCATION,
    SCHEDULE,
    TICK,
    WORKSPACE,
    start_schedule_since,
)

if TYPE_CHECKING:
    from sync_pipeline.fakegraph import FakeGraph

VENV = os.environ.get("SYNC_PIPELINE_DEPLOY_VENV")
if not VENV:
    if os.environ.get("SYNC_PIPELINE_REQUIRE_DEPLOY") == "1":
        raise RuntimeError("SYNC_PIPELINE_DEPLOY_VENV is unset: .ci/run sets it (the wheel's venv)")
    pytest.skip(
        "SYNC_PIPELINE_DEPLOY_VENV is unset (a venv with the built wheel installed; see the "
        "module docstring)",
        allow_module_level=True,
    )
BIN = Path(VENV) / "bin"


@pytest.fixture
def notifying_fake(tmp_path, fake_tenant) -> Iterator[tuple[dict, FakeGraph, tuple[Path, ...]]]:
    """(tenant document, fake Graph, receiver TLS): a fake of the test's own, serving a copy of
    the session's tenant (a user is disabled in it), trusting the receiver's certificate (of a
    CA of the test's own: ca, cert, key), posting only to loopback (its default)."""
    tls = loopback.receiver_tls(tmp_path / "receiver-tls")
    doc = copy.deepcopy(fake_tenant)
    fake = start_fake([doc], tmp_path / "fakegraph", notification_ca=tls[0])
    yield doc, fake, tls
    fake.stop()


@pytest.fixture
def topology_db(server_url: str) -> Iterator[str]:
    """A database of its own on the test server: the deployment's instance and data."""
    name = f"sp_topo_{secrets.token_hex(4)}"
    admin = sa.create_engine(db.with_driver(server_url, "psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def graphql(base: str, query: str, **variables) -> dict:
    response = requests.post(
        f"{base}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries {
  name locationOrLoadError { __typename
    ... on RepositoryLocation { repositories { schedules { name } } }
    ... on PythonError { message } } } } } }"""

RUN = """query ($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { status tags { key value } } } }"""


def schedule_loaded(base: str) -> bool:
    try:
        data = graphql(base, LOCATIONS)
    except (requests.RequestException, ValueError):
        return False
    for entry in data["workspaceOrError"].get("locationEntries", []):
        location = entry["locationOrLoadError"] or {}
        if entry["name"] == LOCATION and location.get("__typename") == "RepositoryLocation":
            names = {s["name"] for r in location["repositories"] for s in r["schedules"]}
            return SCHEDULE in names
    return False


def slot_and_start(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The tenant's sync_time, and the schedule's start, so that the daemon's first ticks
    request the sync without waiting up to five minutes for the next tick.

    The schedule has been running since before the last tick, as after a daemon restart: the
    daemon's first iteration catches that tick up. When the next tick is close, the daemon
    might only come up after it (and evaluates the latest tick alone), so that one is used.
    """
    last = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    slot = last + TICK if last + TICK - now < dt.timedelta(seconds=90) else last
    return slot, last - dt.timedelta(minutes=1)


def receiver_up(url: str, ca: Path) -> bool:
    """The receiver's health endpoint answers, over TLS verified with the test's CA."""
    try:
        with requests.Session() as session:
            session.trust_env, session.verify = False, str(ca)
            return session.get(url, timeout=5).ok
    except requests.RequestException:
        return False


def sole_holder(doc: dict) -> dict:
    """An in-scope user whose address no other user of the tenant holds (the rules for a
    shared address would put the other in its place)."""
    upns = [(u.get("userPrincipalName") or "").lower() for u in doc["users"]]
    in_scope = set(expected_in_scope(doc).values())
    return next(u for u, upn in zip(doc["users"], upns, strict=True)
                if u["id"] in in_scope and upns.count(upn) == 1)  # fmt: skip


def user_active(engine: sa.Engine, tenant: str, user_id: str) -> bool | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT is_active FROM app.users WHERE tenant = :t AND external_id = :id"),
            {"t": tenant, "id": user_id},
        ).scalar_one_or_none()


def test_the_daemon_syncs_on_schedule_and_on_a_change_notification_and_it_converges(
    tmp_path, topology_db, notifying_fake, monkeypatch
):
    import dagster as dg

    work = tmp_path / "cwd"  # an empty folder: nothing is found beside the processes
    dagster_home = tmp_path / "dagster_home"
    for folder in (work, dagster_home):
        folder.mkdir()
    guard, refused_log = loopback.install_guard(tmp_path / "guard")
    code_port, web_port, receiver_port = free_port(), free_port(), free_port()
    env = {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "DAGSTER_HOME": str(dagster_home),
        "DATABASE_URL": topology_db,
        "SYNC_PIPELINE_HOME": str(tmp_path / "state"),
        "SYNC_PIPELINE_CODE_SERVER_HOST": "127.0.0.1",
        "SYNC_PIPELINE_CODE_SERVER_PORT": str(code_port),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "GX_ANALYTICS_ENABLED": "False",
        # the guard only: a folder holding sitecustomize.py and nothing of the project's
        "PYTHONPATH": str(guard),
        loopback.GUARD_LOG_ENV: str(refused_log),
    }
    # Runs execute in the code server's process tree (the default run launcher): the tenant's
    # client secret is needed there and by the CLI only, as deploy/compose.yaml has it.
    code_env = env | {FAKE_SECRET_ENV: FAKE_SECRET}

    doc, fake, (ca, cert, key) = notifying_fake
    receiver_url = f"https://127.0.0.1:{receiver_port}/graph/notifications"
    for url in (fake.base_url, receiver_url, topology_db):
        loopback.assert_loopback(url)

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(BIN / "sync-pipeline"), *args],
            env=code_env, cwd=work, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"sync-pipeline {' '.join(args)}:\n{done.stderr}"
        return done

    # The instance: the dagster.yaml the wheel carries, as the image bakes it into DAGSTER_HOME.
    template = subprocess.run(
        [str(BIN / "python"), "-c", "import importlib.resources as r, sys; "
         "sys.stdout.write(r.files('sync_pipeline').joinpath('dagster.yaml').read_text())"],
        env=env, cwd=work, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (dagster_home / "dagster.yaml").write_text(template)
    guarded = subprocess.run(
        [str(BIN / "python"), "-c", "import socket; print(socket.getaddrinfo.__name__)"],
        env=env, cwd=work, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert guarded.strip() == "_guarded_getaddrinfo", "the loopback guard is not loaded"
    cli("db", "upgrade")  # the deployment's one-off migration step (compose: `migrate`)

    services: list[Service] = []
    try:
        # The receiver needs DATABASE_URL only: no Graph secret (it never calls Graph).
        receiver = Service(
            "receiver",
            [str(BIN / "sync-pipeline"), "notifications", "serve", "--host", "127.0.0.1",
             "--port", str(receiver_port), "--tls-cert", str(cert), "--tls-key", str(key)],
            env, work,
        )  # fmt: skip
        services.append(receiver)
        code = Service(
            "code-server",
            [str(BIN / "dagster"), "code-server", "start", "-m", "sync_pipeline.definitions",
             "-h", "127.0.0.1", "-p", str(code_port), "--location-name", LOCATION],
            code_env, work,
        )  # fmt: skip
        services.append(code)
        health = [str(BIN / "dagster"), "api", "grpc-health-check"]
        health += ["-h", "127.0.0.1", "-p", str(code_port)]
        wait_for(
            "the code server",
            lambda: subprocess.run(health, env=env, cwd=work, capture_output=True).returncode == 0,
            180,
            services,
        )
        web = Service(
            "webserver",
            [str(BIN / "dagster-webserver"), "-w", str(WORKSPACE),
             "-h", "127.0.0.1", "-p", str(web_port)],
            env, work,
        )  # fmt: skip
        services.append(web)
        base = f"http://127.0.0.1:{web_port}"
        wait_for("the webserver to load the location", lambda: schedule_loaded(base), 180, services)
        healthz = f"https://127.0.0.1:{receiver_port}/healthz"
        wait_for("the receiver's health check", lambda: receiver_up(healthz, ca), 60, services)

        # The test's own view of the instance (the checkout's dagster, the same storage).
        monkeypatch.setenv("SYNC_PIPELINE_DAGSTER_PG_URL", db.with_driver(topology_db, "psycopg2"))
        for key_ in ("SYNC_PIPELINE_CODE_SERVER_HOST", "SYNC_PIPELINE_CODE_SERVER_PORT"):
            monkeypatch.setenv(key_, env[key_])
        instance = dg.DagsterInstance.from_config(str(dagster_home))

        slug = f"topo-{secrets.token_hex(3)}"
        slot, since = slot_and_start(dt.datetime.now(dt.UTC))
        (tmp_path / "tenants.yaml").write_text(
            "tenants:\n"
            f"  - slug: {slug}\n"
            f"    tenant_id: {doc['tenant_id']}\n"
            f"    client_id: {doc['client_id']}\n"
            f"    client_secret_env: {FAKE_SECRET_ENV}\n"
            f"    graph_base_url: {fake.base_url}\n"
            f"    authority_host: {fake.base_url}\n"
            f"    ca_bundle: {fake.ca_path}\n"
            "    auto_sync: true\n"
            "    timezone: UTC\n"
            f"    sync_time: '{slot:%H:%M}'\n"
            "    change_notifications: true\n"
            f"    notification_url: {receiver_url}\n"
            "    notification_debounce_seconds: 1\n"
            # a leaver goes at the first read that finds them out (no grace): README,
            # "Deactivation you can trust"
            "    deactivation_grace_reads: 1\n"
            "    deactivation_grace_hours: 0\n"
        )
        cli("tenant", "import", str(tmp_path / "tenants.yaml"))  # also adds its partition
        start_schedule_since(instance, since)

        services.append(
            Service("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)], env, work)
        )
        tagged = dg.RunsFilter(tags={"tenant": slug})
        finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
        finished.add(dg.DagsterRunStatus.CANCELED)
        wait_for(
            "the scheduled run to finish",
            lambda: [r for r in instance.get_runs(tagged) if r.status in finished],
            240 + max(0.0, (slot - dt.datetime.now(dt.UTC)).total_seconds()),
            services,
        )
        (run,) = instance.get_runs(tagged)
        shown = graphql(base, RUN, id=run.run_id)["runOrError"]  # as the UI shows it
        assert shown["status"] == "SUCCESS", "\n".join(s.tail() for s in services)
        tags = {t["key"]: t["value"] for t in shown["tags"]}
        assert tags["dagster/schedule_name"] == SCHEDULE
        assert tags["trigger"] == "schedule" and tags["dagster/partition"] == slug
        # Through the queue: enqueued by the run coordinator, started by the daemon's dequeuer.
        for event in (dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING):
            assert instance.all_logs(run.run_id, of_type=event), event

        data = sa.create_engine(db.with_driver(topology_db, "psycopg"))
        try:
            with data.connect() as conn:
                active = conn.execute(
                    sa.text("SELECT lower(email) FROM app.users WHERE tenant = :t AND is_active"),
                    {"t": slug},
                ).scalars()
                assert set(active) == set(expected_in_scope(doc))

            # The daemon's subscription sensor (in the code server) subscribed through the
            # fake, whose handshake the receiver answered: no subscription without it.
            def subscribed() -> dict[str, state.Subscription]:
                with data.connect() as conn:
                    subs = state.subscriptions(conn, slug)
                return subs if set(subs) == {"users", "groups"} else {}

            subs = wait_for("the subscriptions", subscribed, 120, services)
            at_graph = {s["id"]: s for s in fake.subscriptions(doc["tenant_id"])}
            for sub in subs.values():
                assert at_graph[sub.subscription_id]["notificationUrl"] == receiver_url

            # A user disabled in Entra ID: the fake notifies the receiver, which marks the
            # tenant dirty; the debounced sensor launches a sync that deactivates the user.
            leaver = sole_holder(doc)
            assert user_active(data, slug, leaver["id"]) is True
            before = {r.run_id for r in instance.get_runs(tagged)}
            fake.update_user(doc["tenant_id"], leaver["id"], accountEnabled=False)
            delivered = [
                d for d in fake.deliveries()
                if d["item"].get("resourceData", {}).get("id") == leaver["id"]
            ]  # fmt: skip
            assert delivered and all(d["status"] == 202 for d in delivered), delivered
            with data.connect() as conn:
                assert state.counts(conn, slug).get(state.ACCEPTED, 0) >= 1
            by_notification = dg.RunsFilter(tags={"tenant": slug, "trigger": "notification"})
            wait_for(
                "the notification's sync to finish",
                lambda: [
                    r for r in instance.get_runs(by_notification)
                    if r.run_id not in before and r.status in finished
                ],
                180,
                services,
            )  # fmt: skip
            (notified,) = [r for r in instance.get_runs(by_notification) if r.run_id not in before]
            shown = graphql(base, RUN, id=notified.run_id)["runOrError"]
            assert shown["status"] == "SUCCESS", "\n".join(s.tail() for s in services)
            tags = {t["key"]: t["value"] for t in shown["tags"]}
            assert tags["trigger"] == "notification" and tags["dagster/partition"] == slug
            assert tags["dagster/sensor_name"] == "notification_syncs"
            for event in (dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING):
                assert instance.all_logs(notified.run_id, of_type=event), event
            assert user_active(data, slug, leaver["id"]) is False
            with data.connect() as conn:
                assert not [d for d in state.dirty(conn) if d.tenant == slug]
        finally:
            data.dispose()
        again = cli("sync", slug)  # converged: a manual sync has nothing left to do
        assert "users: 0 created, 0 updated, 0 deactivated" in again.stdout
        instance.dispose()

        # The receiver ends in order on SIGTERM, as a container's stop or a rollout sends it.
        receiver.stop()
        services.remove(receiver)
        assert receiver.returncode in (0, -signal.SIGTERM), receiver.tail()
        assert "Finished server process" in receiver.tail()
        assert loopback.refused(refused_log) == []
    finally:
        for service in reversed(services):
            service.stop()
