"""Real Postgres for the tests: the server, a database of their own, tenants saved in it.

With DATABASE_URL set (CI, the dev machine) a database `sp_test_<random>` is created on that
server for the session and dropped afterwards; without it the embedded server (pgserver) is
used. Tests isolate from each other by tenant slug, as production tenants do. The benchmarks
create their scratch databases with the same functions.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.registry import tenants


def _admin(server_url: str) -> sa.Engine:
    return sa.create_engine(db.with_driver(server_url, "psycopg"), isolation_level="AUTOCOMMIT")


def create_database(server_url: str, prefix: str) -> tuple[str, str]:
    """(name, url) of a new, empty database `<prefix><random>` on the server of `server_url`."""
    name = f"{prefix}{secrets.token_hex(4)}"
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, database_on(server_url, name)


def database_on(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url`."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` (its sessions too) and this process's engine for it."""
    db.engine(database_on(server_url, name)).dispose()
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def new_database(server_url: str, prefix: str) -> Iterator[str]:
    """A database of its own for the block (its URL), dropped afterwards."""
    name, url = create_database(server_url, prefix)
    try:
        yield url
    finally:
        drop_database(server_url, name)


def save_tenant(engine: sa.Engine, settings: TenantSettings) -> TenantSettings:
    """Register a tenant as an admin would: its settings saved (a new version if changed)."""
    with engine.begin() as conn:
        tenants.save(conn, settings)
    return settings


def app_state(engine: sa.Engine, slug: str) -> tuple:
    """The tenant's rows in app.users, app.groups and app.group_members, in a stable order."""
    with engine.connect() as conn:
        return tuple(
            tuple(tuple(r) for r in conn.execute(sa.text(q), {"t": slug}).all())
            for q in (
                "SELECT * FROM app.users WHERE tenant = :t ORDER BY id",
                "SELECT * FROM app.groups WHERE tenant = :t ORDER BY id",
                "SELECT * FROM app.group_members WHERE tenant = :t ORDER BY group_id, user_id",
            )
        )


def app_snapshot(engine: sa.Engine, tenant: str) -> dict[str, list[tuple]]:
    """The tenant's rows in each app.* table, by table name."""
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(
                sa.text(f"SELECT * FROM {t} WHERE tenant = :t ORDER BY 1, 2, 3"), {"t": tenant}
            )]
            for t in ("app.users", "app.groups", "app.group_members")
        }  # fmt: skip


def tenant_lock_held(engine: sa.Engine, tenant: str) -> bool:
    """Whether some session holds the tenant's lock (taken by the extract and the apply)."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                db.q("core/advisory_lock_held"), {"name": f"sync-pipeline:tenant:{tenant}"}
            ).scalar()
        )


# -- fixtures (their bodies: conftest.py registers them, with their scopes) -------------------


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


def database_url(server_url: str) -> Iterator[str]:
    """The session's database, migrated; DATABASE_URL names it while the session runs."""
    with new_database(server_url, "sp_test_") as url:
        old = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url
        db.upgrade(db.engine(url))
        try:
            yield url
        finally:
            if old is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = old


def engine(database_url: str) -> sa.Engine:
    return db.engine(database_url)


def fresh_database(database_url: str) -> Iterator[str]:
    """A database of its own, never touched by a CLI before (the session's may have been)."""
    with new_database(database_url, "sp_fresh_") as url:
        yield url


def tenant_slug() -> str:
    """A slug unique to the test, so tests never see each other's rows."""
    return f"t-{secrets.token_hex(4)}"
