"""Delta rounds: follow a delta query to its deltaLink, and recognise an expired token.

A round starts from `/users/delta?$select=...` (a full read that also yields a link) or from a
stored deltaLink (only the changes since). Graph says a token is no longer usable with 410
Gone, or 400 `syncStateNotFound` / `resyncRequired`: `DeltaExpired` tells the caller to read
everything again, which it must never read as "everyone else was deleted".

A round from a stored link asks for `Prefer: return=minimal`: an updated object then carries
its id and only the properties that changed (Graph's user/group delta docs; without the
header Graph still leaves out properties never set). Whoever applies the items must merge
them into what it holds, never replace the object with them. `latest_link` is Graph's "sync
from now" (`$deltatoken=latest`): a link for the current state without reading anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.errors import GraphError

EXPIRED_CODES = frozenset({"syncStateNotFound", "resyncRequired"})
MINIMAL = {"Prefer": "return=minimal"}


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
        # Only a stored link's round reports updates; a first round lists objects whole.
        self.headers = MINIMAL if params is None else None
        self.link: str | None = None
        self.pages = 0

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        try:
            for page in self.client.pages(self.start, params=self.params, headers=self.headers):
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


def latest_link(client: GraphClient, path: str, select: str) -> str:
    """A deltaLink for the current state of `path` (`/users/delta`, `/groups/delta`) with this
    `$select`, reading no object: its next round reports only changes made after this call."""
    rnd = DeltaRound(client, path, {"$select": select, "$deltatoken": "latest"})
    for page in rnd:
        if page:
            raise GraphError(
                tenant=client.tenant,
                status=200,
                code="UnexpectedObjects",
                message=f"$deltatoken=latest answered {len(page)} objects instead of none",
                path=path,
                hint="The read is incomplete; nothing was loaded",
            )
    assert rnd.link is not None  # DeltaRound fails a round without one
    return rnd.link


def removed(obj: dict[str, Any]) -> str | None:
    """'changed' (soft-deleted, restorable), 'deleted' (gone) or None (present)."""
    mark = obj.get("@removed")
    if mark is None:
        return None
    return str(mark.get("reason") or "deleted") if isinstance(mark, dict) else "deleted"
