"""Prepare the process environment for Dagster and the database, so users never have to.

Sets DAGSTER_HOME (Dagster reads dagster.yaml only from there), the Postgres URL of the
Dagster storage (psycopg2 driver: dagster-postgres cannot use psycopg 3), and, for child
processes (the UI's run workers), DATABASE_URL when the embedded server is in use and the
absolute state folder.

The demo tenant is registered by the CLI (not here: the registry is a floor above) only on
the embedded server of this machine's state folder, so that the quick start's
`sync-pipeline sync contoso-demo` works on a fresh machine; a DATABASE_URL server gets it
only from `sync-pipeline demo`, asked for by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sync_pipeline.core import config, db

# The instance template ships inside the package (pyproject.toml carries it into the wheel).
INSTANCE_TEMPLATE = resources.files("sync_pipeline") / "dagster.yaml"


def prepare(*, migrate: bool = True) -> Prepared:
    """Start/locate the database, migrate it, point Dagster at it."""
    embedded = db.using_embedded()  # decided before DATABASE_URL is set for the children
    url = db.database_url()
    config.export(config.HOME, str(db.home()))
    config.export(config.DATABASE_URL, url)
    config.export(config.DAGSTER_PG_URL, db.with_driver(url, "psycopg2"))
    config.export_default(config.DAGSTER_DISABLE_TELEMETRY, "1")
    config.export_default(config.GX_ANALYTICS_ENABLED, "False")
    user_home = config.dagster_home()
    dagster_home = Path(user_home or db.home() / "dagster")
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    # Ours is kept in step with the template; a DAGSTER_HOME the user chose keeps their file.
    stale = not target.exists() or target.read_bytes() != INSTANCE_TEMPLATE.read_bytes()
    if not target.exists() or (stale and not user_home):
        target.write_bytes(INSTANCE_TEMPLATE.read_bytes())
    config.export(config.DAGSTER_HOME, str(dagster_home))
    if migrate:
        db.upgrade()
    return Prepared(url=url, embedded=embedded)


@dataclass(frozen=True)
class Prepared:
    """What `prepare` set up: the database URL, and whether it is this machine's embedded
    server (where the demo tenant is registered on first use; see the registry)."""

    url: str
    embedded: bool
