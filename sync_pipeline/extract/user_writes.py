"""The writer's user events: a users page (full or incremental) and objects read whole.

A full read's page replaces what the round staged for its users; an incremental one merges
each user's changed properties over its staged row, and a user's manager changes only when
the item says so (`manager@delta`).
"""

from __future__ import annotations

from typing import Any

from sync_pipeline.extract.links import USERS
from sync_pipeline.extract.pager import manager_change
from sync_pipeline.extract.staging import group_row, licence_rows, user_row
from sync_pipeline.extract.writer_state import USER_TABLES, WriterState, fold
from sync_pipeline.graph.delta import removed


class UserWrites(WriterState):
    """Users, their licences and managers; and users or groups read whole by id."""

    def _stage_users(self, present: list[dict[str, Any]]) -> None:
        t = self.tenant
        self.w.copy("users", (user_row(t, u) for u in present))
        self.w.copy("user_licences", [r for u in present for r in licence_rows(t, u)])
        managers = []
        for u in present:
            said, manager = manager_change(u)
            if said and manager:
                managers.append((t, str(u["id"]), manager))
        self.w.copy("user_managers", managers)

    def _on_users(self, page: list[dict[str, Any]], incremental: bool) -> None:
        page = fold(page)
        present = [u for u in page if removed(u) is None]
        gone = [u for u in page if removed(u) is not None]
        soft, hard = self._removals(USERS, gone)
        if not incremental:
            self._suspend("user", soft, hard)
            self._full_page(USERS, page, present, USER_TABLES)
            if hard:
                self.w.discard_members(hard)
            self._stage_users(present)
            return
        ids = [str(u.get("id")) for u in page]
        present = self._merged("users", present)
        self.w.delete("delete_users", ids)
        self.w.delete("delete_user_licences", ids)
        self.w.delete(
            "delete_user_managers",
            [str(u["id"]) for u in gone] + [str(u["id"]) for u in present if manager_change(u)[0]],
        )
        self.w.delete("delete_memberships_of", hard)
        self._suspend("user", soft, hard)
        self.changed[USERS].update(str(u.get("id")) for u in present)
        self.result.changes["users_changed"] = len(self.changed[USERS])
        self._stage_users(present)

    def _on_whole(self, kind: str, objs: list[dict[str, Any]], asked_at: int) -> None:
        """Users or groups read whole by id: staged, replacing anything staged for them."""
        objs = [o for o in objs if self.removed_at.get(str(o["id"]), -1) < asked_at]
        ids = [str(o["id"]) for o in objs]
        if kind == USERS:
            self.w.delete("delete_users", ids)
            self.w.delete("delete_user_licences", ids)
            self.w.delete("delete_user_managers", ids)
            self._stage_users(objs)
        else:
            self.w.delete("delete_groups", ids)
            self.w.copy("groups", (group_row(self.tenant, g) for g in objs))
        self.changed[kind].update(ids)
        self.result.changes[f"{kind}_changed"] = len(self.changed[kind])
        self._restore(kind, ids)
