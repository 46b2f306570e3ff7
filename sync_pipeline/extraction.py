"""One tenant's extraction: Graph → staging.*, full or incremental, in one transaction.

Readers run on threads (Graph calls wait on the network and on the resource-unit budget);
the calling thread owns the database transaction and writes what they send through a
bounded queue, so memory stays flat and nothing is written half: a failure anywhere rolls
back staging and the delta links together. Delta links advance in the same transaction.

- full read (first run, `--full`, or a delta token Graph no longer knows): every staging
  table of the entity family is replaced whole. A resync is a snapshot, never a diff, so a
  user missing from a delta is never taken for a deleted one.
- incremental: only what the delta rounds report changes; `@removed` deletes rows
  ('changed' = soft-deleted and 'deleted' alike leave the directory; both are counted); an
  updated object carries only its changed properties, merged over its staged row; group
  memberships change by `members@delta` pairs. Applying an item twice changes nothing, so a
  change a full read already saw may come again in the next round.
- hidden-membership groups: read whole with `/groups/{id}/members` after every groups round,
  never from `members@delta` (a round may leave their members out silently). When Graph
  refuses them (403: Member.Read.Hidden not granted) the read is partial for that group only:
  it is recorded in staging.unreadable_groups with the permission to grant, and its staged
  memberships stay as last read (a full read puts them back after clearing the table).
Counts are reconciled against Graph's `$count` before the transaction commits.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from sync_pipeline import db
from sync_pipeline.graph import reader
from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.delta import DeltaExpired, latest_link, removed
from sync_pipeline.graph.errors import MEMBER_READ_HIDDEN, GraphError
from sync_pipeline.staging import (
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

USERS, GROUPS = "users", "groups"  # entity families; GROUPS is also a links key (below)
# A groups link whose rounds carry members@delta and `visibility` (v2: since hidden-membership
# groups are told apart; a link's $select is baked into it, so one stored under an earlier key
# would never report visibility).
GROUPS_MEMBERS = "groups_members_v2"
# Links stored under GROUPS (no members, kept before members links were taken at every size)
# or "groups_members" (no visibility) are no longer followed: such a tenant's groups are read
# in full once, and the old link is dropped.
LEGACY_GROUP_LINKS = (GROUPS, "groups_members")
_DONE = object()


@dataclass
class Extraction:
    """What one extraction did, for the materialisation metadata."""

    mode: dict[str, str] = field(default_factory=dict)  # users/groups: full | incremental | resync
    changes: Counter[str] = field(default_factory=Counter)
    staged: dict[str, int] = field(default_factory=dict)
    graph_counts: dict[str, int] = field(default_factory=dict)
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

    # -- users, licences, managers
    def users(self, link: str | None) -> None:
        if link:
            try:
                self._users_incremental(link)
                return
            except DeltaExpired:
                self.pipe.put("mode", USERS, "resync")
        self._users_full()

    def _users_full(self) -> None:
        self.pipe.put("reset", USERS)
        managers = self.pool.submit(self._managers_full)
        rnd = reader.users_delta(self.client)
        for page in rnd:
            self.pipe.put("users", [u for u in page if removed(u) is None], False)
        managers.result()
        self.pipe.put("link", USERS, rnd.link)

    def _managers_full(self) -> None:
        for pairs in reader.users_with_managers(self.client):
            self.pipe.put("managers", pairs, False)

    def _users_incremental(self, link: str) -> None:
        self.pipe.put("mode", USERS, "incremental")
        rnd = reader.users_delta(self.client, link)
        futures: list[Future[None]] = []
        try:
            for page in rnd:
                self.pipe.put("users", page, True)
                changed = [u["id"] for u in page if removed(u) is None]
                futures.extend(
                    self._submit(lambda c=chunk: self._managers_of(c))
                    for chunk in reader.chunks(changed)
                )
        finally:
            self._wait(futures)  # before a resync resets the tables, never after
        self.pipe.put("link", USERS, rnd.link)

    def _managers_of(self, user_ids: list[str]) -> None:
        self.pipe.put("managers", reader.managers_batch(self.client, user_ids), True)

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
        since = latest_link(self.client, "/groups/delta", f"{reader.GROUP_SELECT},members")
        self._groups_batched(since)

    def _groups_read(self, link: str | None) -> None:
        """A groups delta round with members@delta: from the start (full) or a stored link."""
        incremental = link is not None
        if not incremental:
            self.pipe.put("keep_hidden")
        self.pipe.put("mode" if incremental else "reset", GROUPS, "incremental")
        hidden = set(self.hidden) if incremental else set()
        rnd = reader.groups_delta(self.client, link, members=True)
        for page in rnd:
            # A group's entry repeats over pages (its members split): merge, never append.
            self.pipe.put("groups", page, True)
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
        """Full read: a groups delta round without members, each group's members batched."""
        self.pipe.put("keep_hidden")
        self.pipe.put("reset", GROUPS)
        futures: list[Future[None]] = []
        seen: set[str] = set()  # an object may come twice in a round: read its members once
        hidden: set[str] = set()  # read last, each on its own terms (_read_hidden)
        try:
            for page in reader.groups_delta(self.client, None, members=False):
                self.pipe.put("groups", page, False)
                _note_hidden(page, hidden)
                ids = [str(g.get("id")) for g in page if removed(g) is None]
                ids = [i for i in dict.fromkeys(ids) if i not in seen and i not in hidden]
                seen.update(ids)
                futures.extend(
                    self._submit(lambda c=chunk: self._members_of(c))
                    for chunk in reader.chunks(ids)
                )
        finally:
            self._wait(futures)
        self._read_hidden(hidden)
        self.pipe.put("link", GROUPS_MEMBERS, members_link)

    def _members_of(self, group_ids: list[str]) -> None:
        for gid, members, _ in reader.members_batch(self.client, group_ids):
            self.pipe.put("members", gid, members)

    def _read_hidden(self, group_ids: set[str]) -> None:
        """Hidden-membership groups, read whole after the round: replaced in staging when
        Graph answers, recorded as unreadable (rows kept) when it refuses with 403."""

        def denied(gid: str, error: GraphError) -> None:
            self.pipe.put("unreadable", gid, MEMBER_READ_HIDDEN, error)

        def read(chunk: list[str]) -> None:
            for gid, members, first in reader.members_batch(self.client, chunk, denied):
                self.pipe.put("hidden_members", gid, members, first)

        self._wait(
            [self._submit(lambda c=chunk: read(c)) for chunk in reader.chunks(sorted(group_ids))]
        )

    def skus(self) -> None:
        self.pipe.put("skus", reader.subscribed_skus(self.client))


class _BufferedWriter(StagingWriter):
    """Rows gathered per table and COPYed in thousands: one COPY per page costs a round trip
    each, which made the database, not Graph, the bottleneck. Deletes flush first, so rows
    and deletes still reach Postgres in the order the readers sent them."""

    FLUSH_ROWS = 20_000

    def __init__(self, conn: sa.Connection, tenant: str) -> None:
        super().__init__(conn, tenant)
        self.pending: dict[str, list[tuple[Any, ...]]] = {}

    def copy(self, table: str, rows: Any) -> int:
        buf = self.pending.setdefault(table, [])
        buf.extend(rows)
        if len(buf) >= self.FLUSH_ROWS:
            self.pending[table] = []
            return super().copy(table, buf)
        return 0

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for table, rows in pending.items():
            if rows:
                super().copy(table, rows)

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


class _Writer:
    """The database side: applies the readers' events inside the caller's transaction."""

    def __init__(self, conn: sa.Connection, tenant: str, result: Extraction) -> None:
        self.w = _BufferedWriter(conn, tenant)
        self.tenant = tenant
        self.result = result
        self.links: dict[str, str] = {}
        # ids changed in an incremental read, counted once however many entries they have
        # (a group's members@delta spans pages)
        self.changed: dict[str, set[str]] = {USERS: set(), GROUPS: set()}
        self.hidden_before: list[str] = []  # hidden or unreadable groups of the last read
        self.kept = False  # their rows were set aside before a full read cleared them

    def apply(self, kind: str, *args: Any) -> None:
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
        """Delta items carry only what changed: each laid over its staged row (if any)."""
        if not objs:
            return objs
        self.w.flush()  # rows still buffered must be visible to the read
        ids = [str(o.get("id")) for o in objs]
        staged = staged_objects(self.w.conn, self.tenant, table, ids)
        return [{**staged.get(i, {}), **o} for i, o in zip(ids, objs, strict=True)]

    def _on_users(self, page: list[dict[str, Any]], incremental: bool) -> None:
        t, changes = self.tenant, self.result.changes
        page = _fold(page)
        present = [u for u in page if removed(u) is None]
        if incremental:
            gone = [u for u in page if removed(u) is not None]
            for u in gone:
                changes[f"users_removed_{removed(u)}"] += 1
            ids = [str(u.get("id")) for u in page]
            present = self._merged("users", present)
            self.w.delete("delete_users", ids)
            self.w.delete("delete_user_licences", ids)
            gone_ids = [str(u["id"]) for u in gone]
            self.w.delete("delete_user_managers", gone_ids)
            self.w.delete("delete_memberships_of", gone_ids)
            self.changed[USERS].update(str(u.get("id")) for u in present)
            changes["users_changed"] = len(self.changed[USERS])
        self.w.copy("users", (user_row(t, u) for u in present))
        self.w.copy("user_licences", [r for u in present for r in licence_rows(t, u)])

    def _on_managers(self, pairs: list[tuple[str, str | None]], incremental: bool) -> None:
        if incremental:
            self.w.delete("delete_user_managers", [u for u, _ in pairs])
        self.w.copy("user_managers", [(self.tenant, u, m) for u, m in pairs if m])

    def _on_groups(self, page: list[dict[str, Any]], replace: bool) -> None:
        page = _fold(page)
        present = [g for g in page if removed(g) is None]
        if self.result.mode.get(GROUPS) != "incremental":
            if replace:
                self.w.delete("delete_groups", [str(g["id"]) for g in present])
        else:
            gone = [str(g["id"]) for g in page if removed(g) is not None]
            for g in page:
                if removed(g) is not None:
                    self.result.changes[f"groups_removed_{removed(g)}"] += 1
            present = self._merged("groups", present)
            self.w.delete("delete_groups", [str(g.get("id")) for g in page])
            self.w.delete("delete_group_members", gone)
            self.w.delete("delete_memberships_of", gone)
            self.changed[GROUPS].update(str(g.get("id")) for g in present)
            self.result.changes["groups_changed"] = len(self.changed[GROUPS])
        self.w.copy("groups", (group_row(self.tenant, g) for g in present))

    def _member_rows(self, gid: str, members: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        rows = member_rows(self.tenant, gid, members)
        self.result.member_types.update(map(itemgetter(3), rows))
        return rows

    def _on_members(self, gid: str, members: list[dict[str, Any]]) -> None:
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
        self.w.conn.execute(db.q("staging/drop_kept_members"))
        self.w.conn.execute(db.q("staging/keep_hidden_members"), params)
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
        self.w.conn.execute(db.q("staging/save_unreadable_group"), params)
        if self.kept:
            self.w.conn.execute(db.q("staging/restore_kept_members"), params)

    def _on_skus(self, skus: list[dict[str, Any]]) -> None:
        self.w.clear("subscribed_skus")
        self.w.copy("subscribed_skus", [sku_row(self.tenant, s) for s in skus])

    def _on_link(self, entity: str, link: str | None) -> None:
        if link:
            self.links[entity] = link


def _note_hidden(page: list[dict[str, Any]], hidden: set[str]) -> None:
    """Keep `hidden` (the round's hidden-membership groups) up to date with a page: an entry
    that says its visibility decides, a removed group leaves."""
    for g in page:
        gid = str(g.get("id"))
        if removed(g) is not None:
            hidden.discard(gid)
        elif "visibility" in g:
            (hidden.add if reader.is_hidden(g) else hidden.discard)(gid)


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
    return dict(conn.execute(db.q("staging/delta_links"), {"t": tenant}).all())


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

    `delta_members_max_users` (default reader.DELTA_MEMBERS_MAX_USERS): up to this many users
    a full read takes the members in the groups delta round, above it in batches."""
    result = Extraction()
    links = {} if full else stored_links(conn, tenant)
    users = client.count("/users")
    client.budget.resize(users)
    # hidden-membership groups of the last read (and those it could not read): their members
    # are read again whole; the unreadable list is this extraction's alone
    hidden = [r[0] for r in conn.execute(db.q("staging/hidden_groups"), {"t": tenant})]
    conn.execute(db.q("staging/clear_unreadable_groups"), {"t": tenant})
    pipe, writer = _Pipe(), _Writer(conn, tenant, result)
    writer.hidden_before = hidden
    if delta_members_max_users is None:
        delta_members_max_users = reader.DELTA_MEMBERS_MAX_USERS
    readers = _Readers(
        client, pipe, workers, users <= delta_members_max_users, hidden=frozenset(hidden)
    )
    families = ThreadPoolExecutor(max_workers=3, thread_name_prefix="graph-read")
    jobs = [
        families.submit(readers.users, links.get(USERS)),
        families.submit(readers.groups, links),
        families.submit(readers.skus),
    ]
    for job in jobs:
        job.add_done_callback(lambda _: pipe.put("done"))
    try:
        finished = 0
        while finished < len(jobs):
            event = pipe.q.get()
            if event[0] == "done":
                finished += 1
                for job in jobs:  # a reader failed: stop now, not when the others finish
                    if job.done() and job.exception() is not None:
                        raise job.exception()  # type: ignore[misc]
                continue
            writer.apply(*event)
            pipe.taken(event)
            if on_event is not None:
                on_event(event[0])
        for job in jobs:
            job.result()  # a reader's error fails the extraction here
    except BaseException:
        pipe.failed.set()
        raise
    finally:
        families.shutdown(wait=True, cancel_futures=True)
        readers.pool.shutdown(wait=True, cancel_futures=True)
    writer.w.flush()
    _reconcile(client, conn, tenant, result)
    if {USERS, GROUPS_MEMBERS} - set(writer.links):
        raise GraphDataError(f"tenant {tenant}: a delta round gave no link")  # unreachable
    for entity, link in writer.links.items():
        conn.execute(db.q("staging/save_delta_link"), {"t": tenant, "entity": entity, "link": link})
    for legacy in LEGACY_GROUP_LINKS:
        conn.execute(db.q("staging/delete_delta_link"), {"t": tenant, "entity": legacy})
    for row in conn.execute(db.q("staging/unreadable_groups"), {"t": tenant}):
        result.unreadable.setdefault(row.group_id, {})["name"] = row.display_name  # metadata
    for entity, rows in result.staged.items():
        writer.w.record(entity, rows, client.stats.requests)
    db.analyze_if_stale(conn, [f"staging.{table}" for table in COLUMNS])
    return result


def _reconcile(client: GraphClient, conn: sa.Connection, tenant: str, result: Extraction) -> None:
    """Staged users and groups must equal Graph's `$count`, or nothing is kept."""
    staged = conn.execute(db.q("staging/staged_counts"), {"t": tenant}).mappings().one()
    result.staged = {k: int(v) for k, v in staged.items()}
    for entity in (USERS, GROUPS):
        graph = client.count(f"/{entity}")
        result.graph_counts[entity] = graph
        if graph != result.staged[entity]:
            raise GraphDataError(
                f"tenant {tenant}: staged {result.staged[entity]} {entity} but Graph's $count "
                f"says {graph} ({result.mode.get(entity, 'full')} read); nothing was kept. "
                "Run the sync again; if it persists, run `sync-pipeline sync "
                f"{tenant} --full`"
            )
