"""The writer's group events: groups pages, members pages, `members@delta` pairs and
hidden-membership groups (set aside before a full read, recorded when Graph refuses them)."""

from __future__ import annotations

from typing import Any

from sync_pipeline.core import db
from sync_pipeline.extract.links import GROUPS
from sync_pipeline.extract.staging import GraphDataError, group_row
from sync_pipeline.extract.writer_state import GROUP_ROW, WriterState, fold
from sync_pipeline.graph.delta import removed
from sync_pipeline.graph.errors import GraphError


class GroupWrites(WriterState):
    """Groups and their memberships."""

    def _on_groups(self, page: list[dict[str, Any]], fresh: dict[str, int]) -> None:
        page = fold(page)
        present = [g for g in page if removed(g) is None]
        gone = [g for g in page if removed(g) is not None]
        soft, hard = self._removals(GROUPS, gone)
        gone_ids = [str(g["id"]) for g in gone]
        if self.result.mode.get(GROUPS) != "incremental":
            # A repeat replaces the group's row, never its members (a group's entries repeat
            # over pages as its members@delta is split); a removal takes the members too.
            self._suspend("group", soft, hard)
            self._full_page(GROUPS, page, present, GROUP_ROW)
            self.w.discard({"group_members": "delete_group_members"}, gone_ids)
            if gone_ids:
                self.w.discard_members(gone_ids)
            for gid in gone_ids:
                self.generation[gid] = -1  # late member pages of a removed group: dropped
            for gid, gen in fresh.items():
                if gen > 1:  # listed again after a removal: read again
                    self.w.discard({"group_members": "delete_group_members"}, [gid])
                self.generation[gid] = gen
            self.w.copy("groups", (group_row(self.tenant, g) for g in present))
            return
        present = self._merged("groups", present)
        self.w.delete("delete_groups", [str(g.get("id")) for g in page])
        self.w.delete("delete_group_members", hard)
        self.w.delete("delete_memberships_of", hard)
        self._suspend("group", soft, hard)
        self.changed[GROUPS].update(str(g.get("id")) for g in present)
        self.result.changes["groups_changed"] = len(self.changed[GROUPS])
        self.w.copy("groups", (group_row(self.tenant, g) for g in present))

    def _on_members(
        self, gid: str, members: list[dict[str, Any]], generation: int, first: bool
    ) -> None:
        """A page of a group's members read by id (a full batched read, or a group read
        whole): the first page replaces what was staged for the group."""
        if generation == 0:  # a group read whole: its staged members are replaced
            if first:
                self.w.delete("delete_group_members", [gid])
        elif self.generation.get(gid) != generation:
            return  # the group was removed (or listed again) since this read was asked for
        self.w.copy("group_members", self._member_rows(gid, members))

    def _on_members_delta(self, pairs: list[tuple[str, list[dict[str, Any]]]]) -> None:
        """A page's members@delta: each (group, member) pair is deleted, then copied back if
        added, so a pair seen twice (over pages, or again next round) lands once."""
        final: dict[tuple[str, str], dict[str, Any]] = {}
        for gid, items in pairs:
            for m in items:  # the same member may come more than once: the last word wins
                if not m.get("id"):
                    raise GraphDataError(
                        f"tenant {self.tenant}: group {gid} has a members@delta item without id"
                    )
                final[(gid, str(m["id"]))] = m
        self.w.delete_pairs(list(final))
        added: dict[str, list[dict[str, Any]]] = {}
        for (gid, _), m in final.items():
            if removed(m) is None:
                added.setdefault(gid, []).append(m)
        n_added = sum(len(ms) for ms in added.values())
        if self.result.mode.get(GROUPS) == "incremental":
            self.result.changes["members_added"] += n_added
            self.result.changes["members_removed"] += len(final) - n_added
        rows = [r for gid, ms in added.items() for r in self._member_rows(gid, ms)]
        self.w.copy("group_members", rows)

    def _on_keep_hidden(self) -> None:
        """Before a full read clears staging.group_members: set aside the rows of the groups
        that may turn out unreadable, so that a refusal keeps them as last read."""
        self.w.flush()
        params = {"t": self.tenant, "ids": self.hidden_before}
        self.w.conn.execute(db.q("extract/drop_kept_members"))
        self.w.conn.execute(db.q("extract/keep_hidden_members"), params)
        self.kept = True

    def _on_hidden_members(self, gid: str, members: list[dict[str, Any]], first: bool) -> None:
        """A page of a hidden-membership group read whole: its staged rows are replaced."""
        if first:
            self.w.delete("delete_group_members", [gid])
        self.w.copy("group_members", self._member_rows(gid, members))

    def _on_unreadable(self, gid: str, permission: str, error: GraphError) -> None:
        """Graph refused this group's members: recorded; its rows stay as last read."""
        self.w.flush()
        info = {"permission": permission, "status": error.status, "code": error.code}
        info["request_id"] = error.request_id
        self.result.unreadable[gid] = info
        params = {"t": self.tenant, "g": gid, **info}
        self.w.conn.execute(db.q("extract/save_unreadable_group"), params)
        if self.kept:
            self.w.conn.execute(db.q("extract/restore_kept_members"), params)
