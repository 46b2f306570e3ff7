"""Groups whose members the latest extraction could not read, and what that means downstream.

A hidden-membership group (`visibility` HiddenMembership) lists its members only to an app
granted Member.Read.Hidden; without it Graph answers 403 and the extraction records the group
in staging.unreadable_groups, keeping its staged memberships as last read. From there:

- the transform refuses to run when such a group decides who is in scope (a scope group of
  `user_scope: selected_groups`, or a group nested under one): who is in scope is unknown, so
  the sync fails before the diff and app.* is untouched (`check_scope`);
- otherwise the sync goes on with the memberships as last read, and the diff never removes a
  membership of such a group (sql/load/diff.sql);
- the extraction's metadata, the (test) sync report and `explain` name each group with the
  permission to grant (`sentence`).
No Dagster imports (ground floor).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings


@dataclass(frozen=True)
class UnreadableGroup:
    group_id: str
    name: str
    permission: str

    @property
    def sentence(self) -> str:
        return (
            f"members of group {self.name!r} ({self.group_id}) could not be read: grant "
            f"{self.permission}; memberships kept as last read"
        )


class ScopeUnreadable(RuntimeError):
    """A group that decides who is in scope could not be read: the sync must not go on."""


def _groups(rows: sa.CursorResult) -> list[UnreadableGroup]:
    return [UnreadableGroup(r.group_id, r.name, r.permission) for r in rows]


def listed(conn: sa.Connection, tenant: str) -> list[UnreadableGroup]:
    """Every group the latest extraction could not read."""
    return _groups(conn.execute(db.q("transform/unreadable/listed"), {"tenant": tenant}))


def of_user(conn: sa.Connection, tenant: str, user_id: str) -> list[UnreadableGroup]:
    """The unreadable groups this Graph user is in as last read (directly or nested)."""
    params = {"tenant": tenant, "user_id": user_id}
    return _groups(conn.execute(db.q("transform/unreadable/of_user"), params))


def check_scope(conn: sa.Connection, settings: TenantSettings) -> None:
    """Fail when an unreadable group decides who is in scope (see the module doc)."""
    if settings.user_scope != "selected_groups":
        return
    params = {"tenant": settings.slug, "scope_group_ids": list(settings.scope_group_ids)}
    found = _groups(conn.execute(db.q("transform/unreadable/in_scope"), params))
    if found:
        names = "; ".join(g.sentence.replace("; memberships kept as last read", "") for g in found)
        raise ScopeUnreadable(
            f"tenant {settings.slug}: user_scope is selected_groups and who is in scope cannot "
            f"be known: {names}. Grant the permission (admin consent) and sync again; nothing "
            "was changed in the app"
        )
