"""Scale-out on Dagster's celery executor: two real workers on Redis sync three tenants.

The same definitions, selected by SYNC_PIPELINE_CELERY_BROKER; the workers share the Dagster
instance (Postgres) with the process that launches the runs.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import redis
import sqlalchemy as sa

from sync_pipeline.core import environment
from sync_pipeline.registry import tenants
from sync_pipeline_tests.support.waiting import wait_until

BROKER = os.environ.get("SYNC_PIPELINE_TEST_REDIS", "redis://127.0.0.1:6379/7")
SLUGS = ["celery-one", "celery-two", "celery-three"]


def sync_job_on_celery():
    """Imported by the workers by name: the job as the code location defines it, built now
    (not at import), so the executor follows SYNC_PIPELINE_CELERY_BROKER set by the fixture."""
    from sync_pipeline.definitions import build_defs

    return build_defs().resolve_job_def("sync")


@pytest.fixture
def celery_env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    try:
        redis.Redis.from_url(BROKER).ping()
    except redis.RedisError as exc:
        message = f"Redis is not reachable at {BROKER}: {exc}; start redis-server"
        if os.environ.get("SYNC_PIPELINE_REQUIRE_REDIS") == "1":  # CI: .ci/run starts Redis
            pytest.fail(message)
        pytest.skip(message)
    redis.Redis.from_url(BROKER).flushdb()
    monkeypatch.setenv("SYNC_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SYNC_PIPELINE_CELERY_BROKER", BROKER)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    environment.prepare()  # DAGSTER_HOME with Postgres storage, shared with the workers
    dg.DagsterInstance.get()  # create Dagster's tables once, before two workers race to
    # `celery` is run by name from the venv the tests run in
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "celery.yaml"
    config.write_text(f"execution:\n  config:\n    broker: {BROKER}\n    backend: {BROKER}\n")
    command = [
        sys.executable, "-m", "dagster_celery.cli", "worker", "start",
        "-A", "dagster_celery.app", "-y", str(config),
    ]  # fmt: skip
    workers = []
    for name in ("w1", "w2"):
        log = open(tmp_path / f"{name}.log", "w")  # closed below
        proc = subprocess.Popen(
            [*command, "-n", name, "--", "--concurrency=1", "--pool=solo"],
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        workers.append((proc, log))
    logs = [tmp_path / f"{n}.log" for n in ("w1", "w2")]
    try:
        wait_until(lambda: all("ready" in log.read_text() for log in logs), 120, "both workers")
    except AssertionError:
        pytest.fail("celery workers did not start:\n" + logs[0].read_text())
    yield tmp_path
    for proc, log in workers:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_two_celery_workers_sync_three_tenants(celery_env, engine):
    demo = tenants.demo_settings()
    with engine.begin() as conn:
        for slug in SLUGS:
            tenants.save(conn, demo.model_copy(update={"slug": slug}))
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("tenant", SLUGS)
    step_pids: set[int] = set()
    workers: set[str] = set()
    for slug in SLUGS:
        result = dg.execute_job(
            dg.reconstructable(sync_job_on_celery),
            instance=instance,
            tags={"dagster/partition": slug, "tenant": slug, "trigger": "manual"},
        )
        assert result.success, slug
        for event in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START):
            step_pids.add(event.dagster_event.pid)
        for event in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            meta = event.dagster_event.engine_event_data.metadata
            if "Celery worker" in meta:
                workers.add(str(meta["Celery worker"].value).split("@")[0])
    assert step_pids and os.getpid() not in step_pids  # no step ran in the launching process
    assert workers and workers <= {"w1", "w2"}, workers  # every step went through the workers
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                sa.text(
                    "SELECT tenant, count(*) FROM app.users WHERE tenant = ANY(:s) AND is_active"
                    " GROUP BY tenant"
                ),
                {"s": SLUGS},
            ).all()
        )
    assert set(counts) == set(SLUGS)
    assert len(set(counts.values())) == 1 and next(iter(counts.values())) > 100
    with engine.begin() as conn:  # stop syncing them: other tests see the registry
        for slug in SLUGS:
            tenants.remove(conn, slug)
