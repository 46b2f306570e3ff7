"""The tenant registry: settings stored in sync.tenant_settings, versioned, and the demo tenant."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sync_pipeline import db
from sync_pipeline.settings import SettingsError, TenantSettings, parse_settings

DEMO_SLUG = "contoso-demo"
DEMO_SECRET_ENV = "SYNC_PIPELINE_DEMO_SECRET"


class UnknownTenantError(LookupError):
    pass


@dataclass(frozen=True)
class StoredTenant:
    settings: TenantSettings
    version: int
    updated_at: datetime


def save(conn: sa.Connection, settings: TenantSettings) -> int | None:
    """Store the settings; returns the new version, or None when nothing changed."""
    doc = json.dumps(settings.to_document(), sort_keys=True)
    row = conn.execute(db.q("tenants/upsert"), {"slug": settings.slug, "settings": doc}).first()
    return row[0] if row else None


def _parse(slug: str, doc: dict) -> TenantSettings:
    return parse_settings(doc, source=f"stored settings of {slug}")


def get(conn: sa.Connection, slug: str) -> StoredTenant:
    row = conn.execute(db.q("tenants/get"), {"slug": slug}).first()
    if row is None:
        known = ", ".join(t.settings.slug for t in list_all(conn)) or "none"
        raise UnknownTenantError(
            f"no tenant {slug!r} is registered (known: {known}); "
            "add it with `sync-pipeline tenant import FILE.yaml`"
        )
    return StoredTenant(_parse(slug, row.settings), row.version, row.updated_at)


def list_all(conn: sa.Connection) -> list[StoredTenant]:
    out = []
    for row in conn.execute(db.q("tenants/list")):
        try:
            out.append(StoredTenant(_parse(row.slug, row.settings), row.version, row.updated_at))
        except SettingsError:
            continue  # a row that no longer validates is reported by `tenant show`, not here
    return out


def remove(conn: sa.Connection, slug: str) -> bool:
    return conn.execute(db.q("tenants/remove"), {"slug": slug}).first() is not None


def demo_settings() -> TenantSettings:
    from sync_pipeline.fakegraph import bundled_tenant

    doc = bundled_tenant(DEMO_SLUG)
    return TenantSettings(
        slug=DEMO_SLUG,
        display_name="Contoso (demo, served by the bundled fake Graph)",
        tenant_id=doc["tenant_id"],
        client_id=doc["client_id"],
        client_secret_env=DEMO_SECRET_ENV,
        fake_tenant=DEMO_SLUG,
        admin_email=f"admin@{doc['domain']}",
    )


def ensure_demo(conn: sa.Connection) -> bool:
    """Register the demo tenant on a database that has never had a tenant."""
    if conn.execute(db.q("tenants/ever_registered")).scalar():
        return False
    save(conn, demo_settings())
    return True
