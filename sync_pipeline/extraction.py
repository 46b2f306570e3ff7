"""One tenant's extraction: Graph → staging.*, full or incremental, in one transaction.

Readers run on threads (Graph calls wait on the network and on the resource-unit budget);
the calling thread owns the database transaction and writes what they send through a
bounded queue, so memory stays flat and nothing is written half: a failure anywhere rolls
back staging and the delta links together. Delta links advance in the same transaction.

- full read (first run, `--full`, or a delta token Graph no longer knows): every staging
  table of the entity family is replaced whole. A resync is a snapshot, never a diff, so a
  user missing from a delta is never taken for a deleted one.
- incremental: only what the delta rounds report changes; `@removed` deletes rows
  ('changed' = soft-deleted and 'deleted' alike leave the directory; both are counted).
Counts are reconciled against Graph's `$count` before the transaction commits.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from sync_pipeline import db
from sync_pipeline.graph import reader
from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.delta import DeltaExpired, removed
from sync_pipeline.staging import (
    GraphDataError,
    StagingWriter,
    group_row,
    licence_rows,
    member_type,
    sku_row,
    user_row,
)

USERS, GROUPS = "users", "groups"
GROUPS_MEMBERS = "groups_members"  # a groups link whose rounds carry members@delta
_DONE = object()


@dataclass
class Extraction:
    """What one extraction did, for the materialisation metadata."""

    mode: dict[str, str] = field(default_factory=dict)  # users/groups: full | incremental | resync
    changes: Counter[str] = field(default_factory=Counter)
    staged: dict[str, int] = field(default_factory=dict)
    graph_counts: dict[str, int] = field(default_factory=dict)
    member_types: Counter[str] = field(default_factory=Counter)


class _Pipe:
    """Readers → writer. `put` gives up when the writer has failed (no thread left hanging)."""

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=64)
        self.failed = threading.Event()

    def put(self, *event: Any) -> None:
        while not self.failed.is_set():
            try:
                self.q.put(event, timeout=0.2)
                return
            except queue.Full:
                continue
        raise RuntimeError("extraction stopped")


class _Readers:
    """The Graph side: one thread per entity family, a pool for the $batch calls."""

    def __init__(self, client: GraphClient, pipe: _Pipe, workers: int, users: int) -> None:
        self.client, self.pipe = client, pipe
        self.members_in_delta = users <= reader.DELTA_MEMBERS_MAX_USERS
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
        link = links.get(GROUPS_MEMBERS) or links.get(GROUPS)
        if link:
            try:
                self._groups_read(link, GROUPS_MEMBERS in links)
                return
            except DeltaExpired:
                self.pipe.put("mode", GROUPS, "resync")
        self._groups_read(None, self.members_in_delta)

    def _groups_read(self, link: str | None, with_members: bool) -> None:
        incremental = link is not None
        self.pipe.put("mode" if incremental else "reset", GROUPS, "incremental")
        rnd = reader.groups_delta(self.client, link, members=with_members)
        futures: list[Future[None]] = []
        try:
            for page in rnd:
                # With members, a group's entry repeats over pages: replace, never append.
                self.pipe.put("groups", page, incremental or with_members)
                reread = []
                for g in page:
                    if removed(g) is not None:
                        continue
                    if with_members:  # no members@delta: no member (full), no change (delta)
                        if g.get("members@delta"):
                            self.pipe.put("members_delta", g["id"], g["members@delta"])
                    else:
                        reread.append(g["id"])
                futures.extend(
                    self._submit(lambda c=chunk: self._members_of(c, incremental))
                    for chunk in reader.chunks(reread)
                )
        finally:
            self._wait(futures)
        self.pipe.put("link", GROUPS_MEMBERS if with_members else GROUPS, rnd.link)

    def _members_of(self, group_ids: list[str], replace: bool) -> None:
        for gid, members, first in reader.members_batch(self.client, group_ids):
            self.pipe.put("members", gid, members, replace and first)

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

    def _on_users(self, page: list[dict[str, Any]], incremental: bool) -> None:
        t, changes = self.tenant, self.result.changes
        page = _last_word(page)
        present = [u for u in page if removed(u) is None]
        if incremental:
            gone = [u for u in page if removed(u) is not None]
            for u in gone:
                changes[f"users_removed_{removed(u)}"] += 1
            ids = [str(u.get("id")) for u in page]
            self.w.delete("delete_users", ids)
            self.w.delete("delete_user_licences", ids)
            gone_ids = [str(u["id"]) for u in gone]
            self.w.delete("delete_user_managers", gone_ids)
            self.w.delete("delete_memberships_of", gone_ids)
            changes["users_changed"] += len(present)
        self.w.copy("users", (user_row(t, u) for u in present))
        self.w.copy("user_licences", [r for u in present for r in licence_rows(t, u)])

    def _on_managers(self, pairs: list[tuple[str, str | None]], incremental: bool) -> None:
        if incremental:
            self.w.delete("delete_user_managers", [u for u, _ in pairs])
        self.w.copy("user_managers", [(self.tenant, u, m) for u, m in pairs if m])

    def _on_groups(self, page: list[dict[str, Any]], replace: bool) -> None:
        page = _last_word(page)
        present = [g for g in page if removed(g) is None]
        if self.result.mode.get(GROUPS) != "incremental":
            if replace:
                self.w.delete("delete_groups", [str(g["id"]) for g in present])
        else:
            gone = [str(g["id"]) for g in page if removed(g) is not None]
            for g in page:
                if removed(g) is not None:
                    self.result.changes[f"groups_removed_{removed(g)}"] += 1
            self.w.delete("delete_groups", [str(g.get("id")) for g in page])
            self.w.delete("delete_group_members", gone)
            self.w.delete("delete_memberships_of", gone)
            self.result.changes["groups_changed"] += len(present)
        self.w.copy("groups", (group_row(self.tenant, g) for g in present))

    def _member_rows(self, gid: str, members: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        rows = []
        for m in members:
            if not m.get("id"):
                raise GraphDataError(f"tenant {self.tenant}: group {gid} has a member without id")
            kind = member_type(m)
            self.result.member_types[kind] += 1
            rows.append((self.tenant, gid, m["id"], kind))
        return rows

    def _on_members(self, gid: str, members: list[dict[str, Any]], replace: bool) -> None:
        if replace:
            self.w.delete("delete_group_members", [gid])
            self.result.changes["groups_members_reread"] += 1
        self.w.copy("group_members", self._member_rows(gid, members))

    def _on_members_delta(self, gid: str, items: list[dict[str, Any]]) -> None:
        # The same member may come more than once, over several pages: the last word wins.
        final = {str(m["id"]): m for m in items if m.get("id")}
        self.w.delete_pairs([(gid, mid) for mid in final])
        added = [m for m in final.values() if removed(m) is None]
        if self.result.mode.get(GROUPS) == "incremental":
            self.result.changes["members_added"] += len(added)
            self.result.changes["members_removed"] += len(final) - len(added)
        self.w.copy("group_members", self._member_rows(gid, added))

    def _on_skus(self, skus: list[dict[str, Any]]) -> None:
        self.w.clear("subscribed_skus")
        self.w.copy("subscribed_skus", [sku_row(self.tenant, s) for s in skus])

    def _on_link(self, entity: str, link: str | None) -> None:
        if link:
            self.links[entity] = link


def _last_word(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A delta page may list an object twice: keep its last entry."""
    return list({str(o.get("id")): o for o in page}.values())


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
) -> Extraction:
    """Read the tenant's directory into staging inside `conn`'s transaction (see module doc)."""
    result = Extraction()
    links = {} if full else stored_links(conn, tenant)
    users = client.count("/users")
    client.budget.resize(users)
    pipe, writer = _Pipe(), _Writer(conn, tenant, result)
    readers = _Readers(client, pipe, workers, users)
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
    if USERS not in writer.links or not {GROUPS, GROUPS_MEMBERS} & set(writer.links):
        raise GraphDataError(f"tenant {tenant}: a delta round gave no link")  # unreachable
    for entity, link in writer.links.items():
        conn.execute(db.q("staging/save_delta_link"), {"t": tenant, "entity": entity, "link": link})
    for entity, other in ((GROUPS, GROUPS_MEMBERS), (GROUPS_MEMBERS, GROUPS)):
        if entity in writer.links:
            conn.execute(db.q("staging/delete_delta_link"), {"t": tenant, "entity": other})
    for entity, rows in result.staged.items():
        writer.w.record(entity, rows, client.stats.requests)
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
