"""The writer's state over one extraction, and the merge rules every entity family shares.

Graph may list any object more than once in one round, on any page, the first round
included: a repeat replaces what came before (`fold`, `_full_page`), and a removal later in
the round takes the object out again (`_removals`). Soft-deleted objects keep their
memberships aside for a restore (`_suspend`, `_restore`); an object an incremental round
lists but staging does not hold is asked for whole (`_merged`).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from sync_pipeline.extract.buffer import BufferedWriter
from sync_pipeline.extract.links import GROUPS, MEMBERS, USERS
from sync_pipeline.extract.result import Extraction
from sync_pipeline.extract.staging import member_rows, staged_objects
from sync_pipeline.graph.delta import removed

# {staging table: its extract/delete_* statement by object id}, for taking objects back
USER_TABLES = {
    "users": "delete_users",
    "user_licences": "delete_user_licences",
    "user_managers": "delete_user_managers",
}
GROUP_ROW = {"groups": "delete_groups"}


class WriterState:
    """What the writer knows so far in this extraction, and the steps its events share."""

    def __init__(
        self,
        conn: sa.Connection,
        tenant: str,
        result: Extraction,
        whole: Callable[[str, list[str], int], None],
    ) -> None:
        self.w = BufferedWriter(conn, tenant)
        self.tenant = tenant
        self.result = result
        self.whole = whole
        self.links: dict[str, str] = {}
        # ids changed in an incremental read, counted once however many entries they have
        # (a group's members@delta spans pages)
        self.changed: dict[str, set[str]] = {USERS: set(), GROUPS: set()}
        # full read: ids staged so far in this round (a repeat must replace them)
        self.seen: dict[str, set[str]] = {USERS: set(), GROUPS: set()}
        # ids this round reported soft-deleted (their suspended memberships are kept)
        self.soft: dict[str, set[str]] = {USERS: set(), GROUPS: set()}
        # member reads of a full batched read: the generation each group's pages must carry
        self.generation: dict[str, int] = {}
        # when each id was last removed in this round (an event counter), so that a whole
        # read asked for before a later removal does not stage the object again
        self.events = 0
        self.removed_at: dict[str, int] = {}
        self.asked: set[str] = set()  # ids asked for whole in this round
        self.hidden_before: list[str] = []  # hidden or unreadable groups of the last read
        self.kept = False  # their rows were set aside before a full read cleared them

    def apply(self, kind: str, *args: Any) -> None:
        self.events += 1
        getattr(self, f"_on_{kind}")(*args)

    def _on_mode(self, entity: str, mode: str) -> None:
        self.result.mode[entity] = mode

    def _on_reset(self, entity: str, _: Any = None) -> None:
        self.result.mode[entity] = "resync" if self.result.mode.get(entity) == "resync" else "full"
        tables = (
            ("users", "user_licences", "user_managers")
            if entity == USERS
            else ("groups", "group_members")
        )
        for table in tables:
            self.w.clear(table)

    def _merged(self, table: str, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Delta items of staged objects carry only what changed: each laid over its staged
        row. Objects staging does not hold are asked for whole (see the class doc)."""
        if not objs:
            return objs
        ids = [str(o.get("id")) for o in objs]
        self.w.flush()  # rows still buffered must be visible to the read
        staged = staged_objects(self.w.conn, self.tenant, table, ids)
        # asked for once a round (a group's entries span pages; any object may repeat)
        unknown = [i for i in dict.fromkeys(ids) if i not in staged and i not in self.asked]
        self.asked.update(unknown)
        if unknown:
            self.whole(table, unknown, self.events)
            self.result.changes[f"{table}_read_whole"] += len(unknown)
            if table == GROUPS:
                # A group restored with nothing set aside (soft-deleted before a full read):
                # its members too, since the round may say nothing of them. A new group's
                # members@delta and this read agree; applying both changes nothing.
                kept = {r[0] for r in self.w.run("suspended_owners", ids=unknown)}
                if fresh := [i for i in unknown if i not in kept]:
                    self.whole(MEMBERS, fresh, self.events)
        return [{**staged[i], **o} for i, o in zip(ids, objs, strict=True) if i in staged]

    def _removals(self, entity: str, gone: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Count removed objects; returns (soft-deleted ids, hard-deleted ids)."""
        soft: list[str] = []
        hard: list[str] = []
        for obj in gone:
            reason = removed(obj)
            self.result.changes[f"{entity}_removed_{reason}"] += 1
            (soft if reason == "changed" else hard).append(str(obj["id"]))
            self.removed_at[str(obj["id"])] = self.events
            self.asked.discard(str(obj["id"]))
        self.soft[entity].update(soft)
        self.soft[entity].difference_update(hard)
        return soft, hard

    def _suspend(self, kind: str, soft: list[str], hard: list[str]) -> None:
        if soft:
            self.w.run("suspend_members", ids=soft, kind=kind)
        if hard:
            self.w.run("drop_suspended", ids=hard)

    def _restore(self, entity: str, ids: list[str]) -> None:
        """Objects back in the directory: memberships suspended at their soft delete return."""
        self.soft[entity].difference_update(ids)
        if ids:
            back = self.w.run("restore_members", ids=ids).rowcount
            self.result.changes["memberships_restored"] += max(back, 0)

    def _full_page(
        self,
        entity: str,
        page: list[dict[str, Any]],
        present: list[dict[str, Any]],
        tables: dict[str, str],
    ) -> None:
        """A full read's page: objects staged earlier in the round and listed again (a
        repeat, or a removal) are taken back first."""
        seen = self.seen[entity]
        again = [str(o["id"]) for o in page if str(o.get("id")) in seen]
        if again:
            self.result.changes[f"{entity}_listed_again"] += len(again)
            self.w.discard(tables, again)
        for obj in page:
            (seen.add if removed(obj) is None else seen.discard)(str(obj.get("id")))
        self.soft[entity].difference_update(str(o.get("id")) for o in present)

    def _member_rows(self, gid: str, members: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        rows = member_rows(self.tenant, gid, members)
        self.result.member_types.update(map(itemgetter(3), rows))
        return rows


def fold(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A delta page may list an object more than once (changed again, or a group's members
    split over entries): one object each, later properties over earlier ones; a removal, or
    an entry after one, replaces what came before."""
    out: dict[str, dict[str, Any]] = {}
    for obj in page:
        oid = str(obj.get("id"))
        prev = out.get(oid)
        if prev is None or removed(prev) is not None or removed(obj) is not None:
            out[oid] = obj
        else:
            out[oid] = {**prev, **obj}
    return list(out.values())
