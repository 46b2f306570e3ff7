"""The queue between the Graph readers (threads) and the writer (the thread that owns the
database transaction)."""

from __future__ import annotations

import queue
import threading
from typing import Any


class Pipe:
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
