"""What a tenant's snapshot was built from, and the change set since: the incremental
transform's inputs and the reasons it falls back to a full rebuild.

`sync.touched` (migration 014) holds the staging keys written since the last build, filled by
statement triggers on the staging tables in the writes' own transaction; `sync.snapshot_state`
holds the fingerprint of the settings, the schema and the transform's SQL the snapshot was
built from, and its row counts then. No Dagster imports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import sqlalchemy as sa

from sync_pipeline.core import db


def fingerprint(conn: sa.Connection, params: dict[str, object], scripts: Iterable[str]) -> str:
    """One hash of the settings (as bound), the newest migration and the transform's SQL: a
    change to any of them makes the next transform a full rebuild."""
    schema = conn.execute(db.q("transform/state/schema_version")).scalar_one_or_none()
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(str(schema).encode())
    for name in scripts:
        digest.update(db.load_sql(f"transform/{name}").encode())
    return digest.hexdigest()


def touched(conn: sa.Connection) -> dict[str, int]:
    """The change set taken into sp_touched (sql/transform/state/consume.sql): keys per kind
    (user, group, members, full)."""
    return {k: int(n) for k, n in conn.execute(db.q("transform/state/touched_counts"))}


def read(conn: sa.Connection, tenant: str) -> sa.Row | None:
    """The tenant's snapshot state (sql/transform/state/read.sql), None before a first build."""
    return conn.execute(db.q("transform/state/read"), {"tenant": tenant}).one_or_none()


def full_reason(row: sa.Row | None, fp: str, touched: dict[str, int]) -> str | None:
    """Why the snapshot must be rebuilt in full, or None when the change set suffices (`row`:
    read())."""
    if row is None:
        return "first_build"
    if row.fingerprint != fp:
        return "settings_or_schema_changed"
    if touched.get("full"):
        return "full_read"
    if not row.counts_match:
        return "snapshot_changed_outside"
    return None


def record(
    conn: sa.Connection, tenant: str, fp: str, counts: dict[str, int], path: str = "full"
) -> None:
    """Remember what the snapshot was just built from (see full_reason)."""
    conn.execute(
        db.q("transform/state/record"),
        {
            "tenant": tenant,
            "fingerprint": fp,
            "users": counts["users_included"] + counts["users_excluded"],
            "groups": counts["groups_included"] + counts["groups_excluded"],
            "memberships": counts["memberships"],
            "path": path,
        },
    )
