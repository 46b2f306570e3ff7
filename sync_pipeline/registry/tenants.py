"""The tenant registry: settings stored in sync.tenant_settings, versioned, and the demo tenant."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from sync_pipeline.core import config, db
from sync_pipeline.core.settings import SettingsError, TenantSettings, parse_settings

DEMO_SLUG = "contoso-demo"
DEMO_SECRET_ENV = config.DEMO_SECRET


class UnknownTenantError(LookupError):
    pass


@dataclass(frozen=True)
class StoredTenant:
    settings: TenantSettings
    version: int
    updated_at: datetime


# Settings that say which directory a slug reads: changing one points the tenant elsewhere.
DIRECTORY_FIELDS = ("tenant_id", "client_id", "graph_base_url")


def save(conn: sa.Connection, settings: TenantSettings) -> int | None:
    """Store the settings; returns the new version, or None when nothing changed. When the
    change points the tenant at another directory (DIRECTORY_FIELDS), its staging rows and
    delta links are discarded in the same transaction (sql/tenants/discard_directory.sql)."""
    before = conn.execute(db.q("tenants/directory_of"), {"slug": settings.slug}).first()
    document = settings.to_document()  # defaults left out, as stored: compared the same way
    doc = json.dumps(document, sort_keys=True)
    row = conn.execute(db.q("tenants/upsert"), {"slug": settings.slug, "settings": doc}).first()
    if before is not None and any(
        (getattr(before, f) or "") != (document.get(f) or "") for f in DIRECTORY_FIELDS
    ):
        conn.execute(db.q("tenants/discard_directory"), {"t": settings.slug})
    return row[0] if row else None


def _parse(slug: str, doc: dict) -> TenantSettings:
    return parse_settings(doc, source=f"stored settings of {slug}", check_files=False)


def _unknown(conn: sa.Connection, slug: str) -> UnknownTenantError:
    known = ", ".join(t.settings.slug for t in list_all(conn)) or "none"
    return UnknownTenantError(
        f"no tenant {slug!r} is registered (known: {known}); "
        "add it with `sync-pipeline tenant import FILE.yaml`"
    )


def get(conn: sa.Connection, slug: str) -> StoredTenant:
    row = conn.execute(db.q("tenants/get"), {"slug": slug}).first()
    if row is None:
        raise _unknown(conn, slug)
    return StoredTenant(_parse(slug, row.settings), row.version, row.updated_at)


def require(conn: sa.Connection, slug: str) -> None:
    """UnknownTenantError (naming the known tenants) unless `slug` is registered; its stored
    settings need not validate (a tenant whose settings no longer do can still be removed)."""
    if conn.execute(db.q("tenants/get"), {"slug": slug}).first() is None:
        raise _unknown(conn, slug)


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


@dataclass(frozen=True)
class PastVersion:
    version: int
    settings: dict[str, Any]
    valid_from: datetime
    replaced_at: datetime


def history(conn: sa.Connection, slug: str) -> list[PastVersion]:
    """Every earlier version of a tenant's settings, newest first (the stored documents)."""
    return [
        PastVersion(r.version, r.settings, r.valid_from, r.replaced_at)
        for r in conn.execute(db.q("tenants/history"), {"slug": slug})
    ]


# -- checks beyond the model: the app's groups and the tenant's Graph groups -----------------


def referenced_group_ids(settings: TenantSettings) -> dict[str, list[str]]:
    """The Graph group ids the settings name, by setting."""
    return {
        "scope_group_ids": list(settings.scope_group_ids),
        "group_ids": list(settings.group_ids),
        "group_mapping": list(settings.group_mapping),
    }


def app_group_names(conn: sa.Connection, slug: str) -> list[str]:
    return list(conn.execute(db.q("tenants/app_groups"), {"tenant": slug}).scalars())


def validate_against_app(conn: sa.Connection, settings: TenantSettings) -> None:
    """Refuse a group_mapping onto an app group that does not exist (or was removed)."""
    if not (settings.group_mapping_enabled and settings.group_mapping):
        return
    existing = app_group_names(conn, settings.slug)
    lowered = {name.lower(): name for name in existing}
    for graph_id, name in settings.group_mapping.items():
        if name in existing:
            continue
        near = lowered.get(name.lower())
        hint = (
            f"did you mean {near!r}?"
            if near
            else "create it in the app first, or map onto one of: "
            + (", ".join(repr(n) for n in existing[:20]) or "(the app has no groups yet)")
        )
        raise SettingsError(
            f"tenant {settings.slug}: group_mapping {graph_id} = {name!r}: no app group of that "
            f"name; {hint}"
        )


def _refuse_missing(settings: TenantSettings, missing: Iterable[tuple[str, str]], where: str):
    for field, gid in missing:
        raise SettingsError(
            f"tenant {settings.slug}: {field} names group {gid!r}, which does not exist in "
            f"{where}; pick a group id from `sync-pipeline tenant setup {settings.slug}` or "
            "the Entra admin centre"
        )


def graph_groups(settings: TenantSettings) -> list[dict[str, Any]]:
    """The tenant's groups as Graph lists them now (fake tenants through the bundled fake)."""
    from sync_pipeline.graph import GraphClient
    from sync_pipeline.registry import demo

    client = GraphClient(demo.serving(settings), pool_size=4)
    select = "id,displayName,groupTypes,mailEnabled,securityEnabled"
    try:
        pages = client.collection("/groups", params={"$select": select, "$top": 999})
        return [g for page in pages for g in page]
    finally:
        client.close()


def validate_against_graph(
    settings: TenantSettings,
    groups: Iterable[dict[str, Any]] | None = None,
    *,
    only: set[str] | None = None,
) -> None:
    """Refuse scope, selected or mapped group ids the tenant's Graph does not hold.

    `groups` is a listing already read (the wizard has one); otherwise Graph is read. `only`
    limits the check to these ids (those new since the stored version). Graph errors
    (GraphError, CredentialError) propagate: the caller says how to skip the check.
    """
    wanted = [
        (field, gid)
        for field, ids in referenced_group_ids(settings).items()
        for gid in ids
        if only is None or gid in only
    ]
    if not wanted:
        return
    known = {g["id"] for g in (groups if groups is not None else graph_groups(settings))}
    _refuse_missing(settings, [(f, g) for f, g in wanted if g not in known], "the tenant's Graph")


def new_group_ids(before: TenantSettings | None, after: TenantSettings) -> set[str]:
    old = set() if before is None else {i for v in referenced_group_ids(before).values() for i in v}
    return {i for v in referenced_group_ids(after).values() for i in v} - old


def check_before_run(conn: sa.Connection, settings: TenantSettings) -> None:
    """The run-time check, before the snapshot or the app is written.

    Mapping targets against app.groups, and the group ids the settings name against the
    tenant's latest extraction (staging.groups), so no extra Graph call is made. Raises
    SettingsError naming the tenant, the setting and the value.
    """
    validate_against_app(conn, settings)
    if not conn.execute(db.q("tenants/staged_any"), {"tenant": settings.slug}).scalar():
        return
    for field, ids in referenced_group_ids(settings).items():
        if not ids:
            continue
        missing = conn.execute(
            db.q("tenants/staged_groups_missing"), {"tenant": settings.slug, "ids": ids}
        ).scalars()
        _refuse_missing(settings, [(field, gid) for gid in missing], "the tenant's Graph")


def demo_settings(*, auto_sync: bool = False) -> TenantSettings:
    """The demo tenant: the bundled fake Graph's contoso-demo. Its daily schedule is off unless
    asked for (`sync-pipeline demo --auto-sync`): a demo syncs when someone runs it."""
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
        auto_sync=auto_sync,
    )


def ensure_demo(conn: sa.Connection) -> bool:
    """Register the demo tenant out of the box on the embedded server (the CLI's prepare),
    unless it was registered before (and maybe removed on purpose: then it stays removed)."""
    if conn.execute(db.q("tenants/ever_registered"), {"slug": DEMO_SLUG}).scalar():
        return False
    save(conn, demo_settings())
    return True
