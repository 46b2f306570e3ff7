"""The database side of an extraction: the readers' events applied in the caller's
transaction."""

from __future__ import annotations

from typing import Any

from sync_pipeline.extract.group_writes import GroupWrites
from sync_pipeline.extract.links import GROUPS, USERS
from sync_pipeline.extract.staging import sku_row
from sync_pipeline.extract.user_writes import UserWrites


class Writer(UserWrites, GroupWrites):
    """The database side: applies the readers' events inside the caller's transaction.

    Every merge is idempotent, the last occurrence winning, because Graph may list any object
    more than once in one round, on any page, the first round included: a repeat
    replaces what came before, and a removal later in the round takes the object out again.
    Soft-deleted objects ('changed') keep their memberships aside (suspended_members) for a
    restore; hard-deleted ones ('deleted') lose them for good. An object that an incremental
    round lists but staging does not hold (restored, or new) is read whole by id
    (`whole`), never staged from a `return=minimal` fragment merged over nothing.
    """

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
