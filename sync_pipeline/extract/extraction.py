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
before the transaction commits. With `mailbox_types` (the tenant's exclude_mailbox_types is
set), the people who are due then have their mailbox type read (`purposes`), in the same
transaction.

This module runs the read (`extract`); its parts are `links` (delta links), `readers` (the
Graph side), `pipe`, `writer` with `writer_state`, `user_writes` and `group_writes` (the
database side), `buffer` (batched COPY) and `counts` (the `$count` check).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.extract import pager
from sync_pipeline.extract.counts import count_tolerance, reconcile
from sync_pipeline.extract.links import (
    GROUPS,
    GROUPS_MEMBERS,
    LEGACY_LINKS,
    USERS,
    USERS_LINK,
    save_links,
    stored_links,
)
from sync_pipeline.extract.pipe import Pipe
from sync_pipeline.extract.purposes import read_purposes
from sync_pipeline.extract.readers import Readers
from sync_pipeline.extract.result import Extraction
from sync_pipeline.extract.staging import COLUMNS, GraphDataError
from sync_pipeline.extract.writer import Writer
from sync_pipeline.graph.client import GraphClient

# A family read whole: on purpose or first (full), or because Graph no longer knew the token
FULL_MODES = frozenset({"full", "resync"})

# What callers import from here (the asset, tests, benchmarks), wherever it now lives.
__all__ = [
    "GROUPS_MEMBERS",
    "LEGACY_LINKS",
    "USERS_LINK",
    "Extraction",
    "count_tolerance",
    "extract",
    "stored_links",
]


def extract(
    client: GraphClient,
    conn: sa.Connection,
    tenant: str,
    *,
    full: bool = False,
    workers: int = 8,
    on_event: Callable[[str], None] | None = None,
    delta_members_max_users: int | None = None,
    mailbox_types: bool = False,
) -> Extraction:
    """Read the tenant's directory into staging inside `conn`'s transaction (see module doc).

    `delta_members_max_users` (default pager.DELTA_MEMBERS_MAX_USERS): up to this many users
    a full read takes the members in the groups delta round, above it in batches.
    `mailbox_types`: read the due people's mailbox types too (extract/purposes.py)."""
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
    pipe = Pipe()
    if delta_members_max_users is None:
        delta_members_max_users = pager.DELTA_MEMBERS_MAX_USERS
    readers = Readers(
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

    writer = Writer(conn, tenant, result, lambda *a: run(readers.pool, readers.whole, *a))
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
    reconcile(client, conn, tenant, result, before)
    if mailbox_types:
        batch_done = None if on_event is None else functools.partial(on_event, "purposes")
        result.purposes = read_purposes(client, conn, tenant, batch_done)
    if {USERS_LINK, GROUPS_MEMBERS} - set(writer.links):
        raise GraphDataError(f"tenant {tenant}: a delta round gave no link")  # unreachable
    save_links(conn, tenant, writer.links)
    if all(result.mode.get(family) in FULL_MODES for family in (USERS, GROUPS)):
        # users and groups re-read whole: what the schedule's periodic full read waits for
        conn.execute(db.q("extract/record_full_read"), {"t": tenant})
        result.full_read = True
    for row in conn.execute(db.q("extract/unreadable_groups"), {"t": tenant}):
        result.unreadable.setdefault(row.group_id, {})["name"] = row.display_name  # metadata
    for entity, rows in result.staged.items():
        writer.w.record(entity, rows, client.stats.requests)
    sizes = {f"staging.{table}": result.staged.get(table, 0) for table in COLUMNS}
    db.analyze_if_stale(conn, list(sizes), tenant, sizes=sizes)
    return result
