"""The production topology, as separate processes on one machine, all from the installed wheel.

What Dagster's Helm chart and the compose file in deploy/ run: a gRPC code server loading
`sync_pipeline.definitions`, a webserver and a daemon that load the location from it through
deploy/workspace.yaml, and one Postgres holding the Dagster instance (the packaged dagster.yaml)
and the data. A tenant served by the bundled fake Graph is registered with the wheel's CLI; the
daemon's `daily_tenant_syncs` schedule requests its sync, the run queue dequeues it and the run
launcher starts it through the code server; the run succeeds and `app.*` holds the tenant's
in-scope users.

The wheel's venv comes from SYNC_PIPELINE_DEPLOY_VENV (.ci/run builds the wheel and installs it
outside the checkout). Without it the test is skipped, unless SYNC_PIPELINE_REQUIRE_DEPLOY=1
(CI) makes that a failure. To run it locally:

    pip wheel --no-deps -w /tmp/sp-wheel . && python3 -m venv /tmp/sp-venv
    /tmp/sp-venv/bin/pip install /tmp/sp-wheel/sync_pipeline-*.whl
    SYNC_PIPELINE_DEPLOY_VENV=/tmp/sp-venv pytest sync_pipeline_tests/test_topology.py
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sync_pipeline.core import db
from sync_pipeline_tests.conftest import FAKE_SECRET, FAKE_SECRET_ENV
from sync_pipeline_tests.support.fakegraph import expected_in_scope
from sync_pipeline_tests.support.topology import (
    LOCATION,
    SCHEDULE,
    TICK,
    WORKSPACE,
    start_schedule_since,
)

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], object], timeout: float, procs=()) -> object:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline, or
    as soon as one of the processes has exited (with the end of its log)."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            assert proc.poll() is None, f"{proc.name} exited ({proc.returncode}):\n{proc.tail()}"
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


class Service:
    """One long-running process of the topology, in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log = cwd.parent / f"{name}.log"  # beside the empty working folder, not in it
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM to the whole group (run workers included), SIGKILL after 30 s."""
        for signum, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            try:  # the leader is gone; children of the group may not be
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break


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


def test_the_daemon_schedules_a_sync_through_the_code_server_and_it_converges(
    tmp_path, topology_db, fake_graph, fake_tenant, monkeypatch
):
    import dagster as dg

    work = tmp_path / "cwd"  # an empty folder: nothing is found beside the processes
    dagster_home = tmp_path / "dagster_home"
    for folder in (work, dagster_home):
        folder.mkdir()
    code_port, web_port = free_port(), free_port()
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
    }
    # Runs execute in the code server's process tree (the default run launcher): the tenant's
    # client secret is needed there and by the CLI only, as deploy/compose.yaml has it.
    code_env = env | {FAKE_SECRET_ENV: FAKE_SECRET}

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
    cli("db", "upgrade")  # the deployment's one-off migration step (compose: `migrate`)

    services: list[Service] = []
    try:
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

        # The test's own view of the instance (the checkout's dagster, the same storage).
        monkeypatch.setenv("SYNC_PIPELINE_DAGSTER_PG_URL", db.with_driver(topology_db, "psycopg2"))
        for key in ("SYNC_PIPELINE_CODE_SERVER_HOST", "SYNC_PIPELINE_CODE_SERVER_PORT"):
            monkeypatch.setenv(key, env[key])
        instance = dg.DagsterInstance.from_config(str(dagster_home))

        slug = f"topo-{secrets.token_hex(3)}"
        slot, since = slot_and_start(dt.datetime.now(dt.UTC))
        (tmp_path / "tenants.yaml").write_text(
            "tenants:\n"
            f"  - slug: {slug}\n"
            f"    tenant_id: {fake_tenant['tenant_id']}\n"
            f"    client_id: {fake_tenant['client_id']}\n"
            f"    client_secret_env: {FAKE_SECRET_ENV}\n"
            f"    graph_base_url: {fake_graph.base_url}\n"
            f"    authority_host: {fake_graph.base_url}\n"
            f"    ca_bundle: {fake_graph.ca_path}\n"
            "    auto_sync: true\n"
            "    timezone: UTC\n"
            f"    sync_time: '{slot:%H:%M}'\n"
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
                assert set(active) == set(expected_in_scope(fake_tenant))
        finally:
            data.dispose()
        again = cli("sync", slug)  # converged: a manual sync has nothing left to do
        assert "users: 0 created, 0 updated, 0 deactivated" in again.stdout
        instance.dispose()
    finally:
        for service in reversed(services):
            service.stop()
