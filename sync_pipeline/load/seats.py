"""Seats: the change in active app users a sync makes, the number a training application
bills by, and the one sentence every preview, report and summary says it in.

Active before is the tenant's active app users when the diff was planned (`active_users` in
the diff's counts, sql/load/active_users.sql, any source); a create or a reactivation adds
one, a deactivation takes one away, and an adoption takes over a user who is already active
(no change). No Dagster imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MINUS = "\N{MINUS SIGN}"


@dataclass(frozen=True)
class Seats:
    """Active app users before a sync, and how many it activates and deactivates."""

    before: int
    joined: int  # user creates + reactivations
    left: int  # user deactivations

    @property
    def delta(self) -> int:
        return self.joined - self.left

    @property
    def after(self) -> int:
        return self.before + self.delta

    def sentence(self, when: str = "after this sync") -> str:
        """E.g. "+151 / -204 active, 94,947 after this sync", the minus a typographic one
        (U+2212), as issue 16 writes it."""
        return f"+{self.joined:,} / {MINUS}{self.left:,} active, {self.after:,} {when}"

    def metadata(self) -> dict[str, int]:
        """Plain ints for Dagster metadata, so the UI plots them over runs."""
        return {"active_users_after": self.after, "active_users_delta": self.delta}


def from_counts(counts: Mapping[str, int], active_before: int | None = None) -> Seats:
    """The seats of a diff's counts (`<entity>_<action>` keys, as load/diff_counts gives
    them); active before from `active_before`, else the counts' own `active_users`."""
    before = counts.get("active_users", 0) if active_before is None else active_before
    return Seats(
        before=int(before),
        joined=int(counts.get("user_create", 0)) + int(counts.get("user_reactivate", 0)),
        left=int(counts.get("user_deactivate", 0)),
    )
