"""Shared fixtures: a fresh real Postgres database per test session.

With DATABASE_URL set (CI, the dev machine) a database `sp_test_<random>` is created on that
server and dropped afterwards; without it the embedded server (pgserver) is used. Tests
isolate from each other by tenant slug, as production tenants do.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sync_pipeline.core import db

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session", autouse=True)
def sync_home() -> Iterator[str]:
    """Keep the project's local state (CA files, Dagster home) out of the working tree."""
    with tempfile.TemporaryDirectory(prefix="sp-home-") as path:
        old = os.environ.get("SYNC_PIPELINE_HOME")
        os.environ["SYNC_PIPELINE_HOME"] = path
        yield path
        if old is None:
            os.environ.pop("SYNC_PIPELINE_HOME", None)
        else:
            os.environ["SYNC_PIPELINE_HOME"] = old


@pytest.fixture(scope="session")
def server_url(sync_home: str) -> Iterator[str]:
    """DATABASE_URL's server; without one, an embedded server this session starts and stops
    (never db.database_url(): that one outlives the process, by design, for the CLI)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    server = db._import_pgserver().get_server(Path(sync_home) / "pgdata", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    name = f"sp_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(db.with_driver(server_url, "psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    old = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    db.upgrade(db.engine(url))
    yield url
    db.engine(url).dispose()
    if old is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = old
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> sa.Engine:
    return db.engine(database_url)


@pytest.fixture
def instance():
    """A throwaway Dagster instance for one test's runs."""
    import dagster as dg

    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def tenant_slug(request: pytest.FixtureRequest) -> str:
    """A slug unique to the test, so tests never see each other's rows."""
    return f"t-{secrets.token_hex(4)}"


# -- the fake Graph and registered tenants -----------------------------------------------------

FAKE_SECRET_ENV = "SP_TEST_GRAPH_SECRET"
FAKE_SECRET = "test-secret-value"


@pytest.fixture(scope="session")
def fake_tenant() -> dict:
    """A generated tenant large enough to page (> 100 users in a group), small enough to be fast."""
    from sync_pipeline.fakegraph import generate_tenant

    return generate_tenant(name="fabrikam-test", users=260, seed=7, domain="fabrikam.example")


def start_fake(docs: list[dict], state_dir, **options):
    """The bundled fake Graph over HTTPS serving `docs`, every tenant's client secret
    FAKE_SECRET (exported as FAKE_SECRET_ENV, which settings_for names); the caller stops it."""
    from sync_pipeline.fakegraph import FakeGraph

    os.environ[FAKE_SECRET_ENV] = FAKE_SECRET
    secrets_ = {d["tenant_id"]: FAKE_SECRET for d in docs}
    return FakeGraph(docs, secrets=secrets_, state_dir=state_dir, **options).start()


@pytest.fixture(scope="session")
def fake_graph(fake_tenant: dict, tmp_path_factory: pytest.TempPathFactory):
    """The bundled fake Graph over HTTPS, serving `fake_tenant`."""
    fake = start_fake([fake_tenant], tmp_path_factory.mktemp("fakegraph"))
    yield fake
    fake.stop()


def settings_for(slug: str, doc: dict, fake, **overrides):
    """Tenant settings pointing at the fake Graph, as an admin would register them."""
    from sync_pipeline.core.settings import TenantSettings

    fields = {
        "slug": slug,
        "tenant_id": doc["tenant_id"],
        "client_id": doc["client_id"],
        "client_secret_env": FAKE_SECRET_ENV,
        "graph_base_url": fake.base_url,
        "authority_host": fake.base_url,
        "ca_bundle": str(fake.ca_path),
    }
    return TenantSettings(**(fields | overrides))


@pytest.fixture
def register(engine: sa.Engine, fake_tenant: dict, fake_graph):
    """register(slug, **overrides) stores settings for a tenant served by the fake Graph."""
    from sync_pipeline.registry import tenants

    def _register(slug: str, **overrides):
        settings = settings_for(slug, fake_tenant, fake_graph, **overrides)
        with engine.begin() as conn:
            tenants.save(conn, settings)
        return settings

    return _register


# -- a real SMTP server -------------------------------------------------------------------------


class _Inbox:
    """Collects every message the SMTP server receives, parsed."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        from email import message_from_bytes, policy

        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch):
    """An aiosmtpd server on a free port; SMTP_* point at it. Yields the inbox."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_STARTTLS", "false")
    monkeypatch.setenv("SMTP_FROM", "sync@example.test")
    yield inbox
    controller.stop()
