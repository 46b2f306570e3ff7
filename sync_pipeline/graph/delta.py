"""Delta rounds: follow a delta query to its deltaLink, and recognise an expired token.

A round starts from `/users/delta?$select=...` (a full read that also yields a link) or from a
stored deltaLink (only the changes since). Graph says a token is no longer usable with 410
Gone, or 400 `syncStateNotFound` / `resyncRequired`: `DeltaExpired` tells the caller to read
everything again, which it must never read as "everyone else was deleted".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.errors import GraphError

EXPIRED_CODES = frozenset({"syncStateNotFound", "resyncRequired"})


class DeltaExpired(Exception):
    """The delta token is expired or unknown: a full read is needed."""


class DeltaRound:
    """Iterate a delta round's pages (lists of objects); `link` is set when it completes."""

    def __init__(
        self, client: GraphClient, start: str, params: dict[str, Any] | None = None
    ) -> None:
        self.client = client
        self.start = start
        self.params = params
        self.link: str | None = None
        self.pages = 0

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        try:
            for page in self.client.pages(self.start, params=self.params):
                self.pages += 1
                yield page["value"]
                if "@odata.deltaLink" in page:
                    self.link = str(page["@odata.deltaLink"])
        except GraphError as exc:
            if exc.status == 410 or (exc.status == 400 and exc.code in EXPIRED_CODES):
                raise DeltaExpired(str(exc)) from None
            raise
        if not self.link:
            raise GraphError(
                tenant=self.client.tenant,
                status=200,
                code="MissingDeltaLink",
                message="the delta round ended without an @odata.deltaLink",
                path=self.start.split("?")[0],
                hint="The read is incomplete; nothing was loaded",
            )


def removed(obj: dict[str, Any]) -> str | None:
    """'changed' (soft-deleted, restorable), 'deleted' (gone) or None (present)."""
    mark = obj.get("@removed")
    if mark is None:
        return None
    return str(mark.get("reason") or "deleted") if isinstance(mark, dict) else "deleted"
