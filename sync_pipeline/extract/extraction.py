"""One tenant's extraction: Graph → staging.*, full or incremental, in one transaction.

Readers run on threads (Graph calls wait on the network and on the resource-unit budget);
the calling thread owns the database transaction and writes what they send through a
bounded queue, so memory stays flat and nothing is written half: a failure anywhere rolls
back staging and the delta links together. Delta links advance in the same transaction.

- full read (first run, `--full`, or a delta token Graph no longer knows): every staging
  table of the entity family is replaced whole. A resync is a snapshot, never a diff, so a
  user missing from a delta is never taken for a deleted one.
- incremental: only what the delta rounds report changes; an updated object carries only its
  changed properties, merged over its staged row; one staging does not hold (new, or
  restored) is read whole by id; group memberships change by `members@delta` pairs; managers
  by `manager@delta`.
- either way, any object may come more than once in a round: the last occurrence wins, and
  one listed and then `@removed` ends removed. `@removed` 'changed' (soft-deleted, restorable
  for 30 days) sets the object's memberships aside, since Graph keeps them and reports no
  change at the restore; 'deleted' drops them for good.
- hidden-membership groups: read whole with `/groups/{id}/members` after every groups round,
  never from `members@delta` (a round may leave their members out silently). When Graph
  refuses them (403: Member.Read.Hidden not granted) the read is partial for that group only:
  it is recorded in staging.unreadable_groups with the permission to grant, and its staged
  memberships stay as last read (a full read puts them back after clearing the table).
Counts are reconciled against Graph's `$count` (eventually consistent: within a tolerance)
before the transaction commits.
"""

from __future__ import annotations

import math
import queue
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.extract import pager
from sync_pipeline.extract.pager import manager_change
from sync_pipeline.extract.staging import (
    COLUMNS,
    GraphDataError,
    StagingWriter,
    group_row,
    licence_rows,
    member_rows,
    sku_row,
    staged_objects,
    user_row,
)
from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.delta import DeltaExpired, latest_link, removed
from sync_pipeline.graph.errors import MEMBER_READ_HIDDEN, GraphError

USERS, GROUPS = "users", "groups"  # entity families; GROUPS is also a links key (below)
MEMBERS = "members"  # a whole read of groups' members
# A users link whose rounds carry manager@delta (v2: `manager` joined the $select, which a
# stored link keeps baked in; one stored under "users" would never report manager changes).
USERS_LINK = "users_v2"
# A groups link whose rounds carry members@delta and `visibility` (v2: since hidden-membership
# groups are told apart; a link's $select is baked into it, so one stored under an earlier key
# would never report visibility).
GROUPS_MEMBERS = "groups_members_v2"
# Links stored under "users" (no manager), GROUPS (no members, kept before members links were
# taken at every size) or "groups_members" (no visibility) are no longer followed: such a
# tenant is read in full once, and the old link is dropped.
LEGACY_LINKS = (USERS, GROUPS, "groups_members")
_DONE = object()


@dataclass
class Extraction:
    """What one extraction did, for the materialisation metadata."""

    mode: dict[str, str] = field(default_factory=dict)  # users/groups: full | incremental | resync
    changes: Counter[str] = field(default_factory=Counter)
    staged: dict[str, int] = field(default_factory=dict)
    graph_counts: dict[str, int] = field(default_factory=dict)
    # $count reconciliation per entity: exact | within_tolerance | unsupported
    count_check: dict[str, str] = field(default_factory=dict)
    count_offset: dict[str, int] = field(default_factory=dict)  # staged minus $count after
    count_tolerance: dict[str, int] = field(default_factory=dict)
    member_types: Counter[str] = field(default_factory=Counter)
    # groups whose members Graph refused: id -> name, permission, status, code, request_id
    unreadable: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Pipe:
    """Readers → writer. `put` gives up when the writer has failed (no thread left hanging).

    Bulk events (each group's members, from the pool of `$batch` calls) hold at most BULK of
    the queue's slots: the page chains (users, managers, groups) wait for their `put` before
    asking for the next page, and the longest chain sets the extraction's wall time, so they
    must never queue behind a backlog of memberships while the writer is in a COPY.
    """

    BULK_KINDS = frozenset({"members"})
    BULK = 32

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=64 + self.BULK)
        self.bulk = threading.Semaphore(self.BULK)
        self.failed = threading.Event()

    def put(self, *event: Any) -> None:
        if event[0] in self.BULK_KINDS:
            while not self.bulk.acquire(timeout=0.2):
                if self.failed.is_set():
                    raise RuntimeError("extraction stopped")
        while not self.failed.is_set():
            try:
                self.q.put(event, timeout=0.2)
                return
            except queue.Full:
                continue
        raise RuntimeError("extraction stopped")

    def taken(self, event: tuple[Any, ...]) -> None:
        """The writer has applied `event`: its bulk slot is free again."""
        if event[0] in self.BULK_KINDS:
            self.bulk.release()


class _Readers:
    """The Graph side: one thread per entity family, a pool for the $batch calls."""

    def __init__(
        self,
        client: GraphClient,
        pipe: _Pipe,
        workers: int,
        members_in_delta: bool,
        hidden: frozenset[str] = frozenset(),
    ):
        self.client, self.pipe = client, pipe
        self.members_in_delta = members_in_delta
        self.hidden = hidden  # staged hidden-membership groups (for incremental rounds)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph")
        self.slots = threading.Semaphore(2 * workers)  # bounded in-flight batches

    def _submit(self, fn: Callable[[], None]) -> Future[None]:
        self.slots.acquire()
        future = self.pool.submit(fn)
        future.add_done_callback(lambda _: self.slots.release())
        return future

    @staticmethod
    def _wait(futures: list[Future[None]]) -> None:
        for f in futures:
            f.result()

    # -- users, licences, managers (managers come with the users: manager@delta)
    def users(self, link: str | None) -> None:
        if link:
            try:
                self._users_read(link)
                return
            except DeltaExpired:
                self.pipe.put("mode", USERS, "resync")
        self._users_read(None)

    def _users_read(self, link: str | None) -> None:
        incremental = link is not None
        self.pipe.put("mode" if incremental else "reset", USERS, "incremental")
        rnd = pager.users_delta(self.client, link)
        for page in rnd:
            self.pipe.put("users", page, incremental)
        self.pipe.put("link", USERS_LINK, rnd.link)

    def whole(self, kind: str, ids: list[str], seq: int) -> None:
        """Read these users or groups whole (the writer asks: restored or new in a round;
        run on the pool, not bounded by `slots`: the writer thread asks, and never blocks)."""
        for chunk in pager.chunks(ids):
            if kind == MEMBERS:
                self._members_of(chunk, {})
            else:
                self.pipe.put("whole", kind, pager.objects_batch(self.client, kind, chunk), seq)

    # -- groups and memberships
    def groups(self, links: dict[str, str]) -> None:
        link = links.get(GROUPS_MEMBERS)
        if link:
            try:
                self._groups_read(link)
                return
            except DeltaExpired:
                self.pipe.put("mode", GROUPS, "resync")
        if self.members_in_delta:
            self._groups_read(None)
            return
        # Large tenant: the members come from concurrent batches (a members@delta round is
        # one chain of pages: minutes), and the link for the next round is Graph's "sync from
        # now", taken BEFORE reading: a change made during the read comes again next round
        # (harmless: applying an item twice changes nothing); one taken after could miss it.
        since = latest_link(self.client, "/groups/delta", f"{pager.GROUP_SELECT},members")
        self._groups_batched(since)

    def _groups_read(self, link: str | None) -> None:
        """A groups delta round with members@delta: from the start (full) or a stored link."""
        incremental = link is not None
        if not incremental:
            self.pipe.put("keep_hidden")
        self.pipe.put("mode" if incremental else "reset", GROUPS, "incremental")
        hidden = set(self.hidden) if incremental else set()
        rnd = pager.groups_delta(self.client, link, members=True)
        for page in rnd:
            # A group's entry repeats over pages (its members split): merge, never append.
            self.pipe.put("groups", page, {})
            _note_hidden(page, hidden)
            pairs = [
                (str(g["id"]), g["members@delta"])
                for g in page
                if removed(g) is None and g.get("members@delta") and str(g["id"]) not in hidden
            ]
            if pairs:  # no members@delta: no member (full), no membership change (delta)
                self.pipe.put("members_delta", pairs)
        self._read_hidden(hidden)
        self.pipe.put("link", GROUPS_MEMBERS, rnd.link)

    def _groups_batched(self, members_link: str) -> None:
        """Full read: a groups delta round without members, each group's members batched.

        A group may come twice in the round: its members are read once. One removed later in
        the round and listed again after is read again, as generation 2: the writer drops
        member pages of an older generation that arrive late. Hidden-membership groups are
        read last, each on its own terms (_read_hidden)."""
        self.pipe.put("keep_hidden")
        self.pipe.put("reset", GROUPS)
        futures: list[Future[None]] = []
        generation: dict[str, int] = {}
        live: set[str] = set()
        hidden: set[str] = set()
        try:
            for page in pager.groups_delta(self.client, None, members=False):
                _note_hidden(page, hidden)
                fresh: dict[str, int] = {}
                for g in page:
                    gid = str(g.get("id"))
                    if removed(g) is not None:
                        live.discard(gid)
                    elif gid not in live:
                        live.add(gid)
                        if gid not in hidden:
                            fresh[gid] = generation[gid] = generation.get(gid, 0) + 1
                self.pipe.put("groups", page, fresh)
                futures.extend(
                    self._submit(lambda c=chunk, f=fresh: self._members_of(c, f))
                    for chunk in pager.chunks(list(fresh))
                )
        finally:
            self._wait(futures)
        self._read_hidden(hidden)
        self.pipe.put("link", GROUPS_MEMBERS, members_link)

    def _members_of(self, group_ids: list[str], generation: dict[str, int]) -> None:
        for gid, members, first in pager.members_batch(self.client, group_ids):
            self.pipe.put("members", gid, members, generation.get(gid, 0), first)

    def _read_hidden(self, group_ids: set[str]) -> None:
        """Hidden-membership groups, read whole after the round: replaced in staging when
        Graph answers, recorded as unreadable (rows kept) when it refuses with 403."""

        def denied(gid: str, error: GraphError) -> None:
            self.pipe.put("unreadable", gid, MEMBER_READ_HIDDEN, error)

        def read(chunk: list[str]) -> None:
            for gid, members, first in pager.members_batch(self.client, chunk, denied):
                self.pipe.put("hidden_members", gid, members, first)

        self._wait(
            [self._submit(lambda c=chunk: read(c)) for chunk in pager.chunks(sorted(group_ids))]
        )

    def skus(self) -> None:
        self.pipe.put("skus", pager.subscribed_skus(self.client))


class _BufferedWriter(StagingWriter):
    """Rows gathered per table and COPYed in thousands: one COPY per page costs a round trip
    each, which made the database, not Graph, the bottleneck. Deletes flush first, so rows
    and deletes still reach Postgres in the order the readers sent them.

    Buffered rows are kept by their object (a row's first id: the user of a licence, the group
    of a membership), so a repeat or a removal later in a full read takes them back without a
    flush (`discard`)."""

    FLUSH_ROWS = 20_000

    def __init__(self, conn: sa.Connection, tenant: str) -> None:
        super().__init__(conn, tenant)
        self.pending: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
        self.buffered: dict[str, int] = {}

    def copy(self, table: str, rows: Any) -> int:
        buf = self.pending.setdefault(table, {})
        n = self.buffered.get(table, 0)
        for row in rows:
            buf.setdefault(row[1], []).append(row)
            n += 1
        self.buffered[table] = n
        if n >= self.FLUSH_ROWS:
            return self._flush_table(table)
        return 0

    def _flush_table(self, table: str) -> int:
        rows = [r for rs in self.pending.pop(table, {}).values() for r in rs]
        self.buffered[table] = 0
        return super().copy(table, rows) if rows else 0

    def flush(self) -> None:
        for table in list(self.pending):
            self._flush_table(table)

    def discard(self, tables: dict[str, str], ids: list[str]) -> None:
        """Take these objects' rows back: from the buffer, and from the tables they may have
        been flushed to ({table: its staging/delete_* statement by object id})."""
        if not ids:
            return
        for table, statement in tables.items():
            buf = self.pending.get(table, {})
            for oid in ids:
                self.buffered[table] = self.buffered.get(table, 0) - len(buf.pop(oid, ()))
            super().delete(statement, ids)

    def discard_members(self, ids: list[str]) -> None:
        """These objects leave every group they were buffered or staged as members of."""
        wanted = set(ids)
        for rows in self.pending.get("group_members", {}).values():
            kept = [r for r in rows if r[2] not in wanted]
            self.buffered["group_members"] -= len(rows) - len(kept)
            rows[:] = kept
        super().delete("delete_memberships_of", ids)

    def clear(self, table: str) -> None:
        self.flush()
        super().clear(table)

    def delete(self, statement: str, ids: list[str]) -> None:
        if ids:
            self.flush()
            super().delete(statement, ids)

    def delete_pairs(self, pairs: list[tuple[str, str]]) -> None:
        if pairs:
            self.flush()
            super().delete_pairs(pairs)

    def run(self, statement: str, **params: Any) -> sa.CursorResult[Any]:
        """A staging/* statement over what is staged so far (the buffer flushed first)."""
        self.flush()
        return self.conn.execute(db.q(f"extract/{statement}"), {"t": self.tenant, **params})


_USER_TABLES = {
    "users": "delete_users",
    "user_licences": "delete_user_licences",
    "user_managers": "delete_user_managers",
}
_GROUP_ROW = {"groups": "delete_groups"}
_GROUP_TABLES = {"groups": "delete_groups", "group_members": "delete_group_members"}


class _Writer:
    """The database side: applies the readers' events inside the caller's transaction.

    Every merge is idempotent, the last occurrence winning, because Graph may list any object
    more than once in one round, on any page, the first round included (GRAPH.md): a repeat
    replaces what came before, and a removal later in the round takes the object out again.
    Soft-deleted objects ('changed') keep their memberships aside (suspended_members) for a
    restore; hard-deleted ones ('deleted') lose them for good. An object that an incremental
    round lists but staging does not hold (restored, or new) is read whole by id
    (`whole`), never staged from a `return=minimal` fragment merged over nothing.
    """

    def __init__(
        self,
        conn: sa.Connection,
        tenant: str,
        result: Extraction,
        whole: Callable[[str, list[str], int], None],
    ) -> None:
        self.w = _BufferedWriter(conn, tenant)
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
        soft, hard = [], []
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

    # -- users
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
        page = _fold(page)
        present = [u for u in page if removed(u) is None]
        gone = [u for u in page if removed(u) is not None]
        soft, hard = self._removals(USERS, gone)
        if not incremental:
            self._suspend("user", soft, hard)
            self._full_page(USERS, page, present, _USER_TABLES)
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

    # -- groups and memberships
    def _on_groups(self, page: list[dict[str, Any]], fresh: dict[str, int]) -> None:
        page = _fold(page)
        present = [g for g in page if removed(g) is None]
        gone = [g for g in page if removed(g) is not None]
        soft, hard = self._removals(GROUPS, gone)
        gone_ids = [str(g["id"]) for g in gone]
        if self.result.mode.get(GROUPS) != "incremental":
            # A repeat replaces the group's row, never its members (a group's entries repeat
            # over pages as its members@delta is split); a removal takes the members too.
            self._suspend("group", soft, hard)
            self._full_page(GROUPS, page, present, _GROUP_ROW)
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

    def _member_rows(self, gid: str, members: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        rows = member_rows(self.tenant, gid, members)
        self.result.member_types.update(map(itemgetter(3), rows))
        return rows

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

    def _on_skus(self, skus: list[dict[str, Any]]) -> None:
        self.w.clear("subscribed_skus")
        self.w.copy("subscribed_skus", [sku_row(self.tenant, s) for s in skus])

    def _on_link(self, entity: str, link: str | None) -> None:
        if link:
            self.links[entity] = link

    def finish(self) -> None:
        """After a full read of a family, suspended memberships are kept only for what this
        read reported soft-deleted: any other owner was restored or deleted meanwhile."""
        self.w.flush()
        for entity, kind in ((USERS, "user"), (GROUPS, "group")):
            if self.result.mode.get(entity) in ("full", "resync"):
                self.w.run("keep_suspended", kind=kind, ids=sorted(self.soft[entity]))


def _note_hidden(page: list[dict[str, Any]], hidden: set[str]) -> None:
    """Keep `hidden` (the round's hidden-membership groups) up to date with a page: an entry
    that says its visibility decides, a removed group leaves."""
    for g in page:
        gid = str(g.get("id"))
        if removed(g) is not None:
            hidden.discard(gid)
        elif "visibility" in g:
            (hidden.add if pager.is_hidden(g) else hidden.discard)(gid)


def _fold(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def stored_links(conn: sa.Connection, tenant: str) -> dict[str, str]:
    return dict(conn.execute(db.q("extract/delta_links"), {"t": tenant}).all())


def extract(
    client: GraphClient,
    conn: sa.Connection,
    tenant: str,
    *,
    full: bool = False,
    workers: int = 8,
    on_event: Callable[[str], None] | None = None,
    delta_members_max_users: int | None = None,
) -> Extraction:
    """Read the tenant's directory into staging inside `conn`'s transaction (see module doc).

    `delta_members_max_users` (default pager.DELTA_MEMBERS_MAX_USERS): up to this many users
    a full read takes the members in the groups delta round, above it in batches."""
    result = Extraction()
    links = {} if full else stored_links(conn, tenant)
    before = {USERS: client.count("/users"), GROUPS: client.count("/groups")}
    users = before[USERS]
    if users is not None:
        client.budget.resize(users)
    # hidden-membership groups of the last read (and those it could not read): their members
    # are read again whole; the unreadable list is this extraction's alone
    hidden = [r[0] for r in conn.execute(db.q("extract/hidden_groups"), {"t": tenant})]
    conn.execute(db.q("extract/clear_unreadable_groups"), {"t": tenant})
    pipe = _Pipe()
    if delta_members_max_users is None:
        delta_members_max_users = pager.DELTA_MEMBERS_MAX_USERS
    readers = _Readers(
        client,
        pipe,
        workers,
        users is not None and users <= delta_members_max_users,
        hidden=frozenset(hidden),
    )
    tasks: list[Future[None]] = []
    families = ThreadPoolExecutor(max_workers=3, thread_name_prefix="graph-read")

    def run(pool: ThreadPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
        """A reader task that says "done" from its own thread (the writer's thread, which
        drains the queue, must never block on putting into it)."""

        def task() -> None:
            try:
                fn(*args)
            finally:
                pipe.put("done")

        tasks.append(pool.submit(task))

    writer = _Writer(conn, tenant, result, lambda *a: run(readers.pool, readers.whole, *a))
    writer.hidden_before = hidden
    run(families, readers.users, links.get(USERS_LINK))
    run(families, readers.groups, links)
    run(families, readers.skus)
    try:
        finished = 0
        while finished < len(tasks):  # tasks grows while the writer asks for whole reads
            event = pipe.q.get()
            if event[0] == "done":
                finished += 1
                for task in tasks:  # a reader failed: stop now, not when the others finish
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                continue
            writer.apply(*event)
            pipe.taken(event)
            if on_event is not None:
                on_event(event[0])
        for task in tasks:
            task.result()  # a reader's error fails the extraction here
    except BaseException:
        pipe.failed.set()
        raise
    finally:
        families.shutdown(wait=True, cancel_futures=True)
        readers.pool.shutdown(wait=True, cancel_futures=True)
    writer.finish()
    _reconcile(client, conn, tenant, result, before)
    if {USERS_LINK, GROUPS_MEMBERS} - set(writer.links):
        raise GraphDataError(f"tenant {tenant}: a delta round gave no link")  # unreachable
    for entity, link in writer.links.items():
        conn.execute(db.q("extract/save_delta_link"), {"t": tenant, "entity": entity, "link": link})
    for legacy in LEGACY_LINKS:
        conn.execute(db.q("extract/delete_delta_link"), {"t": tenant, "entity": legacy})
    for row in conn.execute(db.q("extract/unreadable_groups"), {"t": tenant}):
        result.unreadable.setdefault(row.group_id, {})["name"] = row.display_name  # metadata
    for entity, rows in result.staged.items():
        writer.w.record(entity, rows, client.stats.requests)
    db.analyze_if_stale(conn, [f"staging.{table}" for table in COLUMNS], tenant)
    return result


def count_tolerance(settings: TenantSettings, count: int) -> int:
    """How far staged objects may be from Graph's `$count` (docs/extraction.md): the larger of
    `count_tolerance_objects` and `count_tolerance_percent` of the count."""
    share = math.ceil(count * settings.count_tolerance_percent / 100)
    return max(settings.count_tolerance_objects, share)


def _reconcile(
    client: GraphClient,
    conn: sa.Connection,
    tenant: str,
    result: Extraction,
    before: dict[str, int | None],
) -> None:
    """Staged users and groups must match Graph's `$count`, taken before and after the read,
    within the tenant's tolerance (the count is eventually consistent), or nothing is kept.

    Objects created or deleted during the read move the count; staged within the two counts
    is exact. Beyond them by more than the tolerance, pages were lost. Where the tenant does
    not support `$count` (Azure AD B2C), completeness rests on the paging protocol and the
    drift and safety guards: said in the metadata, never a failure."""
    staged = conn.execute(db.q("extract/staged_counts"), {"t": tenant}).mappings().one()
    result.staged = {k: int(v) for k, v in staged.items()}
    for entity in (USERS, GROUPS):
        after = client.count(f"/{entity}")
        first = before.get(entity)
        if after is None or first is None:
            result.count_check[entity] = "unsupported"
            continue
        result.graph_counts[entity] = after
        low, high = min(first, after), max(first, after)
        have = result.staged[entity]
        off = low - have if have < low else have - high if have > high else 0
        tolerance = count_tolerance(client.settings, high)
        result.count_offset[entity] = have - after
        result.count_tolerance[entity] = tolerance
        result.count_check[entity] = "exact" if off == 0 else "within_tolerance"
        if off > tolerance:
            between = f"{low}" if low == high else f"{low} before and {high} after the read"
            raise GraphDataError(
                f"tenant {tenant}: staged {have} {entity} but Graph's $count says {between} "
                f"({result.mode.get(entity, 'full')} read): {off} more than index lag "
                f"explains (tolerance {tolerance}: count_tolerance_objects / "
                "count_tolerance_percent); pages were lost, so nothing was kept. Run the sync "
                f"again; if it persists, run `sync-pipeline sync {tenant} --full`"
            )
