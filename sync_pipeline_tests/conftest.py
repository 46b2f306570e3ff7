"""Fixture registration: every fixture's body lives in support/, by concern; here each is
registered under its name and scope. The session's state lives in a temporary home and a
database of its own (support/home.py, support/database.py)."""

from __future__ import annotations

import os

import pytest

from sync_pipeline_tests.support import cli as cli_support
from sync_pipeline_tests.support import database, fakegraph, home, pipeline, smtp

# Still importable from here, for modules that have not moved to support/ yet.
from sync_pipeline_tests.support.fakegraph import (  # noqa: F401
    FAKE_SECRET,
    FAKE_SECRET_ENV,
    settings_for,
    start_fake,
)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

session = pytest.fixture(scope="session")

sync_home = pytest.fixture(scope="session", autouse=True)(home.sync_home)
server_url = session(database.server_url)
database_url = session(database.database_url)
engine = session(database.engine)
fresh_database = pytest.fixture(database.fresh_database)
tenant_slug = pytest.fixture(database.tenant_slug)
instance = pytest.fixture(pipeline.instance)
fake_tenant = session(fakegraph.fake_tenant)
fake_graph = session(fakegraph.fake_graph)
register = pytest.fixture(fakegraph.register)
smtp_server = pytest.fixture(smtp.smtp_server)
cli = pytest.fixture(cli_support.in_process)
