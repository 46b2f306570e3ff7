"""The Graph side of an extraction: one thread per entity family, a pool for the `$batch`
calls, each sending what it reads to the writer through the pipe.

Users come with their managers (`manager@delta`); groups with their members, from the
groups delta round (`members@delta`, a small tenant or an incremental round) or from
concurrent batches (a large tenant's full read). Hidden-membership groups are read whole
after every groups round, never from `members@delta` (a round may leave their members out
silently); a 403 on one is sent as `unreadable`, not raised.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sync_pipeline.extract import pager
from sync_pipeline.extract.links import GROUPS, GROUPS_MEMBERS, MEMBERS, USERS, USERS_LINK
from sync_pipeline.extract.pipe import Pipe
from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.delta import DeltaExpired, latest_link, removed
from sync_pipeline.graph.errors import MEMBER_READ_HIDDEN, GraphError


class Readers:
    """The Graph side: one thread per entity family, a pool for the $batch calls."""

    def __init__(
        self,
        client: GraphClient,
        pipe: Pipe,
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
            note_hidden(page, hidden)
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
                note_hidden(page, hidden)
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
                    self._submit(functools.partial(self._members_of, chunk, fresh))
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
            [self._submit(functools.partial(read, c)) for c in pager.chunks(sorted(group_ids))]
        )

    def skus(self) -> None:
        self.pipe.put("skus", pager.subscribed_skus(self.client))


def note_hidden(page: list[dict[str, Any]], hidden: set[str]) -> None:
    """Keep `hidden` (the round's hidden-membership groups) up to date with a page: an entry
    that says its visibility decides, a removed group leaves."""
    for g in page:
        gid = str(g.get("id"))
        if removed(g) is not None:
            hidden.discard(gid)
        elif "visibility" in g:
            (hidden.add if pager.is_hidden(g) else hidden.discard)(gid)
