"""One tenant's directory as the fake holds it: objects by id, memberships, managers and
SKUs, the change log delta rounds read, and views derived from it (cached until the next
change). The changes themselves (the admin ops) are in `mutations.py`.
"""

from __future__ import annotations

import collections
import copy
import random
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync_pipeline.fakegraph.generator import GROUP_TYPE, USER_TYPE


@dataclass
class _DeltaSession:
    kind: str  # users | groups
    tenant_id: str
    select: list[str] | None
    items: list[str]
    start_version: int
    from_version: int | None
    epoch: int
    member_lists: dict[str, list[dict]] = field(default_factory=dict)
    minimal: bool = False  # `Prefer: return=minimal` on the deltaLink call
    # Graph may list an object again anywhere later in the round (delta-query-overview.md):
    # objects already listed, waiting to be listed again on a later page
    repeats: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)


class _TenantState:
    """One tenant's directory, indexed by id, with a change log for delta queries."""

    def __init__(self, doc: Mapping[str, Any]):
        self.tenant_id: str = doc["tenant_id"]
        self.client_id: str = doc["client_id"]
        self.name: str = doc.get("name") or self.tenant_id
        self.domain: str | None = doc.get("domain")
        self.users: dict[str, dict] = {u["id"]: dict(u) for u in doc["users"]}
        self.groups: dict[str, dict] = {g["id"]: dict(g) for g in doc["groups"]}
        self.others: dict[str, dict] = {o["id"]: dict(o) for o in doc.get("other_objects", [])}
        self.members: dict[str, dict[str, None]] = {
            gid: dict.fromkeys(doc.get("members", {}).get(gid, [])) for gid in self.groups
        }
        self.managers: dict[str, str] = dict(doc.get("managers", {}))
        # mailboxSettings.userPurpose by user id where it is not a person's own mailbox
        # (shared, room, equipment, ...), or None for no mailbox at all; everyone else: see
        # mailbox_purpose
        self.mailbox_purposes: dict[str, str | None] = dict(doc.get("mailbox_purposes", {}))
        self.skus: list[dict] = copy.deepcopy(doc.get("subscribedSkus", []))
        self.version = 0
        self.user_changes: dict[str, int] = {}
        self.group_changes: dict[str, int] = {}
        self.member_changes: dict[str, dict[str, int]] = {}
        self.deleted_users: dict[str, str] = {}
        self.deleted_groups: dict[str, str] = {}
        # Soft-deleted objects ('changed'), restorable: the object, the memberships it keeps
        # (Graph keeps them and reports no members@delta change, delta-query-groups.md) and
        # its manager links.
        self.recycled: dict[str, dict[str, Any]] = {}
        # manager changes: visible to a users delta round only with `manager` selected
        # (docs/graph.md); the version, and the manager before the change (for manager@delta)
        self.manager_changes: dict[str, tuple[int, str | None]] = {}
        # $count is eventually consistent: when each object was created or deleted (monotonic
        # seconds), so a count can lag them (FakeGraph count_lag)
        self.count_events: list[tuple[float, str, int]] = []  # (when, users|groups, +1/-1)
        # open delta sessions (by id): an object deleted during a round is listed again,
        # @removed, later in that round
        self.open_sessions: dict[str, _DeltaSession] = {}
        # For delta rounds' updated objects (Graph sends changed properties, not the whole
        # object): the version each object was created at and each property last changed at.
        self.created: dict[str, int] = {}
        self.prop_changes: dict[str, dict[str, int]] = {}
        self.delta_epoch = 0
        self.expire_mode = "410"
        self._cache: dict[Any, Any] = {}

    # -- derived, cached until the next mutation
    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = build()
        return value

    def user_list(self) -> list[dict]:
        return self.cached("users", lambda: list(self.users.values()))

    def group_list(self) -> list[dict]:
        return self.cached("groups", lambda: list(self.groups.values()))

    def member_list(self, gid: str) -> list[str]:
        return self.cached(("members", gid), lambda: list(self.members[gid]))

    def member_of(self, oid: str) -> list[str]:
        """The groups `oid` is a direct member of (`/users/{id}/memberOf`)."""

        def build() -> dict[str, list[str]]:
            index: dict[str, list[str]] = {}
            for gid, members in self.members.items():
                for mid in members:
                    index.setdefault(mid, []).append(gid)
            return index

        return list(self.cached("member_of", build).get(oid, ()))

    def transitive(self, gid: str) -> list[str]:
        def build() -> list[str]:
            seen: dict[str, None] = {}
            stack = [gid]
            visited_groups = {gid}
            while stack:
                current = stack.pop()
                for mid in self.members.get(current, ()):
                    if mid == gid:
                        continue
                    if mid not in seen:
                        seen[mid] = None
                    if mid in self.groups and mid not in visited_groups:
                        visited_groups.add(mid)
                        stack.append(mid)
            return list(seen)

        return self.cached(("transitive", gid), build)

    def size_limit(self) -> int:
        n = len(self.users)
        return 3500 if n < 50 else 5000 if n <= 500 else 8000

    def odata_type(self, oid: str) -> str | None:
        if oid in self.users:
            return USER_TYPE
        if oid in self.groups:
            return GROUP_TYPE
        other = self.others.get(oid)
        return other["@odata.type"] if other else None

    def user_by_key(self, key: str) -> dict | None:
        user = self.users.get(key)
        if user is None and "@" in key:
            index = self.cached(
                "upn",
                lambda: {
                    u["userPrincipalName"].lower(): u["id"]
                    for u in self.users.values()
                    if u.get("userPrincipalName")
                },
            )
            uid = index.get(urllib.parse.unquote(key).lower())
            user = self.users.get(uid) if uid else None
        return user

    def mailbox_purpose(self, user: Mapping[str, Any]) -> str | None:
        """The user's mailbox type (Graph's userPurpose), or None when the user has no
        Exchange Online mailbox here: a guest (their mailbox is in their home tenant), a
        member without a mail address, and whoever the document says."""
        uid = user["id"]
        if uid in self.mailbox_purposes:
            return self.mailbox_purposes[uid]
        if str(user.get("userType") or "").lower() == "guest" or not user.get("mail"):
            return None
        return "user"

    def skus_now(self) -> list[dict]:
        def build() -> list[dict]:
            counts: collections.Counter[str] = collections.Counter()
            for u in self.users.values():
                for lic in u.get("assignedLicenses") or ():
                    counts[lic["skuId"]] += 1
            out = []
            for sku in self.skus:
                item = dict(sku)
                item["consumedUnits"] = counts.get(sku["skuId"], 0)
                out.append(item)
            return out

        return self.cached("skus", build)

    def document(self) -> dict:
        return {
            "name": self.name,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "domain": self.domain,
            "users": copy.deepcopy(self.user_list()),
            "groups": copy.deepcopy(self.group_list()),
            "members": {gid: list(m) for gid, m in self.members.items()},
            "other_objects": copy.deepcopy(list(self.others.values())),
            "managers": dict(self.managers),
            "mailbox_purposes": dict(self.mailbox_purposes),
            "subscribedSkus": copy.deepcopy(self.skus_now()),
        }
