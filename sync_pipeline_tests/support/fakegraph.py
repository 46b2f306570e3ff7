"""The bundled fake Graph for tests: started over HTTPS, and tenant settings pointing at it.

Every tenant the fake serves here has the client secret FAKE_SECRET, which the settings name
through the environment variable FAKE_SECRET_ENV (exported when a fake starts). The
benchmarks build their settings with the same `settings_fields`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from sync_pipeline.core.settings import TenantSettings
from sync_pipeline_tests.support.database import save_tenant
from sync_pipeline_tests.support.rows import NO_GRACE

if TYPE_CHECKING:  # imported when used: the benchmarks' measured readers never load the fake
    import pytest

    from sync_pipeline.fakegraph import FakeGraph

FAKE_SECRET_ENV = "SP_TEST_GRAPH_SECRET"
FAKE_SECRET = "test-secret-value"


def start_fake(docs: list[dict], state_dir: Path | str, **options: Any) -> FakeGraph:
    """The bundled fake Graph over HTTPS serving `docs`, every tenant's client secret
    FAKE_SECRET (exported as FAKE_SECRET_ENV, which settings_for names); the caller stops it."""
    from sync_pipeline.fakegraph import FakeGraph

    os.environ[FAKE_SECRET_ENV] = FAKE_SECRET
    secrets_ = {d["tenant_id"]: FAKE_SECRET for d in docs}
    return FakeGraph(docs, secrets=secrets_, state_dir=state_dir, **options).start()


def settings_fields(
    slug: str,
    *,
    tenant_id: str,
    client_id: str,
    base_url: str,
    ca_path: str,
    secret_env: str = FAKE_SECRET_ENV,
) -> dict[str, Any]:
    """The settings fields that point a tenant at a fake Graph (its token endpoint too)."""
    return {
        "slug": slug,
        "tenant_id": tenant_id,
        "client_id": client_id,
        "client_secret_env": secret_env,
        "graph_base_url": base_url,
        "authority_host": base_url,
        "ca_bundle": ca_path,
    }


def settings_for(slug: str, doc: dict, fake: FakeGraph, **overrides: Any) -> TenantSettings:
    """Tenant settings pointing at the fake Graph, as an admin would register them."""
    fields = settings_fields(
        slug,
        tenant_id=doc["tenant_id"],
        client_id=doc["client_id"],
        base_url=fake.base_url,
        ca_path=str(fake.ca_path),
    )
    return TenantSettings(**(fields | NO_GRACE | overrides))


def register_tenant(
    engine: sa.Engine, slug: str, doc: dict, fake: FakeGraph, **overrides: Any
) -> TenantSettings:
    """Save settings for tenant `slug`, served by `fake` from its document `doc`."""
    return save_tenant(engine, settings_for(slug, doc, fake, **overrides))


def new_tenant(engine: sa.Engine, prefix: str, doc: dict, fake: FakeGraph, **overrides: Any) -> str:
    """Register a tenant of a slug of its own (`<prefix>-<random>`) served by `fake` from
    `doc`; returns the slug."""
    slug = f"{prefix}-{secrets.token_hex(4)}"
    register_tenant(engine, slug, doc, fake, **overrides)
    return slug


# -- fixtures (their bodies: conftest.py registers them, with their scopes) -------------------


def fake_tenant() -> dict:
    """A generated tenant large enough to page (> 100 users in a group), small enough to be fast."""
    from sync_pipeline.fakegraph import generate_tenant

    return generate_tenant(name="fabrikam-test", users=260, seed=7, domain="fabrikam.example")


def fake_graph(fake_tenant: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGraph]:
    """The bundled fake Graph over HTTPS, serving `fake_tenant`."""
    fake = start_fake([fake_tenant], tmp_path_factory.mktemp("fakegraph"))
    yield fake
    fake.stop()


def register(engine: sa.Engine, fake_tenant: dict, fake_graph: FakeGraph):
    """register(slug, **overrides) stores settings for a tenant served by the fake Graph."""

    def _register(slug: str, **overrides: Any) -> TenantSettings:
        return register_tenant(engine, slug, fake_tenant, fake_graph, **overrides)

    return _register


def expected_in_scope(doc: dict) -> dict[str, str]:
    """Independently of the SQL: default settings keep enabled members with a UPN, one per
    address (case-insensitive). Returns {lower address: graph id of some holder}."""
    out: dict[str, str] = {}
    for u in doc["users"]:
        upn = (u.get("userPrincipalName") or "").strip()
        if u["accountEnabled"] and u["userType"] == "Member" and "@" in upn:
            out.setdefault(upn.lower(), u["id"])
    return out
