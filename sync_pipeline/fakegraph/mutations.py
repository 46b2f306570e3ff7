"""The admin ops that change a tenant between (or during) sync rounds: users, groups,
memberships and managers added, changed, soft-deleted, purged and restored, each recorded in
the change log so delta rounds report it as Graph does.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sync_pipeline.fakegraph.generator import GROUP_KEYS, USER_KEYS
from sync_pipeline.fakegraph.tenant import _TenantState


class _Tenant(_TenantState):
    """A tenant's directory with the admin ops (`apply`) that change it."""

    def _bump(self) -> int:
        self.version += 1
        self._cache.clear()
        return self.version

    def _touch_user(self, uid: str) -> None:
        self.user_changes[uid] = self._bump()

    def _touch_member(self, gid: str, mid: str) -> None:
        self.member_changes.setdefault(gid, {})[mid] = self._bump()

    def apply(self, op: Mapping[str, Any], rng: random.Random) -> Any:
        kind = op.get("op")
        handler = getattr(self, f"_op_{kind}", None)
        if handler is None:
            raise ValueError(f"unknown admin op {kind!r}")
        return handler(op, rng)

    def _op_add_user(self, op: Mapping[str, Any], rng: random.Random) -> str:
        given = dict(op["user"])
        uid = given.get("id") or str(uuid.UUID(int=rng.getrandbits(128), version=4))
        user: dict[str, Any] = dict.fromkeys(USER_KEYS)
        for key in ("otherMails", "proxyAddresses", "assignedLicenses"):
            user[key] = []
        user.update(
            accountEnabled=True,
            userType="Member",
            createdDateTime=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        user.update(given)
        user["id"] = uid
        self.users[uid] = user
        self.deleted_users.pop(uid, None)
        self.recycled.pop(uid, None)
        self._touch_user(uid)
        self.created[uid] = self.version
        self._counted("users", +1)
        return uid

    def _counted(self, kind: str, step: int) -> None:
        self.count_events.append((time.monotonic(), kind, step))

    def _removed_during_rounds(self, kind: str, oid: str) -> None:
        for session in self.open_sessions.values():
            if session.kind == kind:
                session.items.append(oid)

    def _op_update_user(self, op: Mapping[str, Any], rng: random.Random) -> str:
        uid = op["id"]
        if uid not in self.users:
            raise KeyError(f"no user {uid}")
        changes = {k: v for k, v in dict(op.get("changes", {})).items() if k != "id"}
        self.users[uid].update(changes)
        self._touch_user(uid)
        self.prop_changes.setdefault(uid, {}).update(dict.fromkeys(changes, self.version))
        return uid

    def _op_delete_user(self, op: Mapping[str, Any], rng: random.Random) -> str:
        """'changed': soft delete (restorable; memberships and manager links kept aside, no
        members@delta change); 'deleted': gone for good (a soft-deleted user purged too):
        its memberships end with members@delta removals, its reports lose their manager."""
        uid = op["id"]
        reason = op.get("reason", "deleted")
        if reason not in ("deleted", "changed"):
            raise ValueError(f"reason must be 'deleted' or 'changed', got {reason!r}")
        user = self.users.pop(uid, None)
        recycled = self.recycled.pop(uid, None)
        if user is None and (recycled is None or reason == "changed"):
            raise KeyError(f"no user {uid}")
        self.deleted_users[uid] = reason
        if user is not None:
            self._counted("users", -1)
        groups = [gid for gid, members in self.members.items() if uid in members]
        for gid in groups:
            del self.members[gid][uid]
        if reason == "changed":
            self.recycled[uid] = {"object": user, "groups": groups}
        else:
            if recycled is not None:  # purged from the recycle bin: now the members go
                groups = recycled["groups"]
            for gid in groups:
                if gid in self.members:
                    self._touch_member(gid, uid)
            self.managers.pop(uid, None)
            for report in [r for r, m in self.managers.items() if m == uid]:
                del self.managers[report]
                self._manager_changed(report, uid)
        self._touch_user(uid)
        self._removed_during_rounds("users", uid)
        return uid

    def _op_restore_user(self, op: Mapping[str, Any], rng: random.Random) -> str:
        """A soft-deleted user back, with its memberships and manager links, and no
        members@delta or manager change; its delta item carries only what changed (nothing:
        Graph does not document what a restored object carries under return=minimal)."""
        uid = op["id"]
        recycled = self.recycled.pop(uid, None)
        if recycled is None:
            raise KeyError(f"no soft-deleted user {uid}")
        self.users[uid] = recycled["object"]
        self.deleted_users.pop(uid, None)
        self._counted("users", +1)
        for gid in recycled["groups"]:
            if gid in self.members:
                self.members[gid][uid] = None
        self._touch_user(uid)
        return uid

    def _manager_changed(self, uid: str, before: str | None) -> None:
        self.manager_changes[uid] = (self._bump(), before)

    def _op_set_mailbox_purpose(self, op: Mapping[str, Any], rng: random.Random) -> str:
        """A mailbox converted (to shared, room, ... or back to user), or removed (None).
        Not a directory change: no delta round reports it (mailboxSettings is no property a
        users delta can select), as in Exchange Online."""
        uid = op["id"]
        if uid not in self.users:
            raise KeyError(f"no user {uid}")
        self.mailbox_purposes[uid] = op.get("purpose")
        return uid

    def _op_add_members(self, op: Mapping[str, Any], rng: random.Random) -> str:
        gid = op["group_id"]
        if gid not in self.groups:
            raise KeyError(f"no group {gid}")
        for mid in op["member_ids"]:
            if self.odata_type(mid) is None:
                raise KeyError(f"no directory object {mid}")
            if mid not in self.members[gid]:
                self.members[gid][mid] = None
                self._touch_member(gid, mid)
        return gid

    def _op_remove_members(self, op: Mapping[str, Any], rng: random.Random) -> str:
        gid = op["group_id"]
        if gid not in self.groups:
            raise KeyError(f"no group {gid}")
        for mid in op["member_ids"]:
            if mid in self.members[gid]:
                del self.members[gid][mid]
                self._touch_member(gid, mid)
        return gid

    def _op_set_manager(self, op: Mapping[str, Any], rng: random.Random) -> str:
        """A manager change is no property change: only a users delta round that selects
        `manager` sees it (as manager@delta)."""
        uid, mid = op["user_id"], op.get("manager_id")
        if uid not in self.users or (mid is not None and mid not in self.users):
            raise KeyError(f"no user {uid if uid not in self.users else mid}")
        before = self.managers.get(uid)
        if mid is None:
            self.managers.pop(uid, None)
        else:
            self.managers[uid] = mid
        self._manager_changed(uid, before)
        return uid

    def _op_add_group(self, op: Mapping[str, Any], rng: random.Random) -> str:
        given = dict(op["group"])
        gid = given.get("id") or str(uuid.UUID(int=rng.getrandbits(128), version=4))
        group: dict[str, Any] = dict.fromkeys(GROUP_KEYS)
        group.update(
            groupTypes=[],
            mailEnabled=False,
            securityEnabled=True,
            createdDateTime=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        group.update(given)
        group["id"] = gid
        self.groups[gid] = group
        self.members.setdefault(gid, {})
        self.deleted_groups.pop(gid, None)
        self.recycled.pop(gid, None)
        self.group_changes[gid] = self.created[gid] = self._bump()
        self._counted("groups", +1)
        if op.get("member_ids"):
            self._op_add_members({"group_id": gid, "member_ids": op["member_ids"]}, rng)
        return gid

    def _op_update_group(self, op: Mapping[str, Any], rng: random.Random) -> str:
        gid = op["id"]
        if gid not in self.groups:
            raise KeyError(f"no group {gid}")
        changes = {k: v for k, v in dict(op.get("changes", {})).items() if k != "id"}
        self.groups[gid].update(changes)
        self.group_changes[gid] = self._bump()
        self.prop_changes.setdefault(gid, {}).update(dict.fromkeys(changes, self.version))
        return gid

    def _op_delete_group(self, op: Mapping[str, Any], rng: random.Random) -> str:
        """As for users: 'changed' keeps the group's members and its own memberships aside
        for a restore, with no members@delta change; 'deleted' ends them."""
        gid = op["id"]
        reason = op.get("reason", "deleted")
        if reason not in ("deleted", "changed"):
            raise ValueError(f"reason must be 'deleted' or 'changed', got {reason!r}")
        group = self.groups.pop(gid, None)
        recycled = self.recycled.pop(gid, None)
        if group is None and (recycled is None or reason == "changed"):
            raise KeyError(f"no group {gid}")
        if group is not None:
            self._counted("groups", -1)
        members = self.members.pop(gid, {})
        self.member_changes.pop(gid, None)
        self.deleted_groups[gid] = reason
        parents = [p for p, ms in self.members.items() if gid in ms]
        for parent in parents:
            del self.members[parent][gid]
        if reason == "changed":
            self.recycled[gid] = {"object": group, "members": members, "parents": parents}
        else:
            if recycled is not None:
                parents = recycled["parents"]
            for parent in parents:
                if parent in self.members:
                    self._touch_member(parent, gid)
        self.group_changes[gid] = self._bump()
        self._removed_during_rounds("groups", gid)
        return gid

    def _op_restore_group(self, op: Mapping[str, Any], rng: random.Random) -> str:
        gid = op["id"]
        recycled = self.recycled.pop(gid, None)
        if recycled is None or "members" not in recycled:
            raise KeyError(f"no soft-deleted group {gid}")
        self.groups[gid] = recycled["object"]
        self.deleted_groups.pop(gid, None)
        self._counted("groups", +1)
        self.members[gid] = {m: None for m in recycled["members"] if self.odata_type(m) is not None}
        for parent in recycled["parents"]:
            if parent in self.members:
                self.members[parent][gid] = None
        self.group_changes[gid] = self._bump()
        return gid
