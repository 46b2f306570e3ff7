"""The Dagster instance's storage: Postgres, found the way the CLI finds it.

`dagster.yaml` names this class so that `dagster dev` (or the webserver and daemon started by
hand) works from the repository root with no wrapper: the storage URL is
SYNC_PIPELINE_DAGSTER_PG_URL when set (the CLI sets it), else DATABASE_URL's server, else the
embedded one; the psycopg2 driver either way (dagster-postgres cannot use psycopg 3). The URL
is exported to the environment, so the code server and run workers started afterwards find
the same database, and instance references name the variable, never the URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from sync_pipeline.core import config, db

_BY_ENV = f"postgres_url:\n  env: {config.DAGSTER_PG_URL}\n"


def storage_url() -> str:
    url = config.dagster_pg_url()
    if not url:
        database = db.database_url()
        config.export_default(config.DATABASE_URL, database)
        url = config.export(config.DAGSTER_PG_URL, db.with_driver(database, "psycopg2"))
    return url


class ProjectStorage(DagsterPostgresStorage):
    """dagster-postgres storage on the project's database (see the module docstring)."""

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> ProjectStorage:
        return cls(inst_data=inst_data, postgres_url=storage_url())

    def _part(self, name: str) -> ConfigurableClassData:
        return ConfigurableClassData("dagster_postgres", name, _BY_ENV)

    @property
    def event_storage_data(self) -> ConfigurableClassData:
        return self._part("PostgresEventLogStorage")

    @property
    def run_storage_data(self) -> ConfigurableClassData:
        return self._part("PostgresRunStorage")

    @property
    def schedule_storage_data(self) -> ConfigurableClassData:
        return self._part("PostgresScheduleStorage")
