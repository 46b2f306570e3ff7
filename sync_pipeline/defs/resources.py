"""Resources: the database and the Graph client factory."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from sync_pipeline.core import db
from sync_pipeline.core.settings import SettingsError, TenantSettings
from sync_pipeline.graph import CredentialError, GraphClient, preflight
from sync_pipeline.registry import demo, tenants


class Database(dg.ConfigurableResource):
    """Postgres holding staging, sync and app. The code location sets `url` from the
    DATABASE_URL variable (dg.EnvVar); empty (tests, scripts): DATABASE_URL, else embedded."""

    url: str = Field(
        default="",
        description="SQLAlchemy URL of the Postgres server holding staging.*, sync.* and app.*",
    )

    def engine(self) -> sa.Engine:
        return db.engine(self.url or db.database_url())

    def tenant_settings(self, slug: str) -> TenantSettings:
        """The tenant's stored settings, validated again before the run writes anything."""
        try:
            with self.engine().connect() as conn:
                settings = tenants.get(conn, slug).settings
                tenants.validate_against_app(conn, settings)  # before the run writes anything
                return settings
        except (SettingsError, tenants.UnknownTenantError) as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None


class Graph(dg.ConfigurableResource):
    """Builds Graph clients; a fake tenant (the demo) gets its fake Graph started in-process."""

    workers: int = 8

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["Graph"]:
        """The run holds its liveness lock while this resource lives, and first fails the
        tenant's runs whose process died (defs/liveness.py)."""
        from sync_pipeline.defs import liveness

        with liveness.run_guard(context, db.engine(db.database_url())):
            yield self

    def client(self, settings: TenantSettings) -> GraphClient:
        """A client for the tenant, after the preflight (graph/preflight.py; not again when
        the CLI that launched this run checked the same settings a moment ago): a
        configuration that cannot work fails the step at once, never retried."""
        try:
            served = demo.serving(settings)
            preflight.check_unless_passed(served)
            return GraphClient(served, pool_size=max(16, 2 * self.workers))
        except CredentialError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None
