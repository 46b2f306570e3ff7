"""The bundled fake Microsoft Graph and Entra ID token endpoint, served over local TLS.

One HTTPS server answers both the login endpoints (`/{tenant_id}/oauth2/v2.0/token`, the
OpenID configuration, device code) and Graph (`/v1.0/...`), so that msal's
`ConfidentialClientApplication` and `requests` talk to it exactly as to Microsoft. The
behaviour follows the Graph notes (GRAPH.md): paging, `$select`, `$count`, `$expand=manager`,
`$batch`, resource-unit throttling, delta queries (with `$deltatoken=latest`, and updated
objects as Graph sends them: properties never set left out, or with `Prefer: return=minimal`
only the changed ones) and error shapes. An admin API under
`/_admin/` (and the same operations as Python methods) mutates tenants between rounds.

Everything runs in the event loop thread of one uvicorn server; request handling is
synchronous under one lock (the Python admin methods take the same lock), so the state
needs no other synchronisation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import copy
import datetime as dt
import hashlib
import json
import logging
import os
import random
import secrets as _secrets
import string
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import orjson
import trustme
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_pipeline.fakegraph.generator import GROUP_KEYS, GROUP_TYPE, USER_KEYS, USER_TYPE

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 3599
USER_DEFAULT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
_USER_EMPTY_LISTS = frozenset(
    {
        "businessPhones",
        "otherMails",
        "proxyAddresses",
        "assignedLicenses",
        "assignedPlans",
        "imAddresses",
    }
)
USER_PROPS = (
    frozenset(USER_KEYS)
    | frozenset(USER_DEFAULT)
    | frozenset(
        {
            "mailNickname",
            "usageLocation",
            "employeeType",
            "city",
            "country",
            "state",
            "streetAddress",
            "postalCode",
            "onPremisesImmutableId",
            "onPremisesSamAccountName",
            "onPremisesDomainName",
            "onPremisesUserPrincipalName",
            "onPremisesLastSyncDateTime",
            "externalUserState",
            "creationType",
            "ageGroup",
            "employeeHireDate",
            "faxNumber",
            "imAddresses",
            "assignedPlans",
            "lastPasswordChangeDateTime",
            "deletedDateTime",
            "preferredDataLocation",
            "showInAddressList",
            "securityIdentifier",
        }
    )
)
GROUP_PROPS = frozenset(GROUP_KEYS) | frozenset(
    {
        "visibility",
        "classification",
        "onPremisesSyncEnabled",
        "proxyAddresses",
        "renewedDateTime",
        "securityIdentifier",
        "expirationDateTime",
        "isAssignableToRole",
        "membershipRuleProcessingState",
        "deletedDateTime",
        "preferredDataLocation",
        "theme",
    }
)
MAX_TOP = 999
MAX_TOP_EXPAND = 100
DEFAULT_TOP = 100
BATCH_MAX = 20
GLOBAL_LIMIT = 150_000  # resource units per app across tenants, per 20 s
GLOBAL_WINDOW = 20.0
# Per app across all tenants, whatever the service: "2000 requests per second" (the global
# table of Microsoft's concepts/throttling-limits.md). Each request inside a `$batch` counts
# (json-batching.md: "Requests in a batch are evaluated individually against throttling
# limits"), and so does the batch itself: the docs do not say whether the envelope counts, so
# the fake takes the stricter reading.
REQUESTS_PER_SECOND = 2_000
TENANT_WINDOW = 10.0
_ODATA_NEXT = "@odata.nextLink"
_UNSUPPORTED_DELTA = ("$top", "$orderby", "$expand", "$filter", "$search", "$count")
_KNOWN_OPTIONS = (
    "select",
    "top",
    "skiptoken",
    "count",
    "expand",
    "filter",
    "search",
    "orderby",
    "skip",
    "deltatoken",
    "levels",
    "format",
)
_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_DROP = object()
_ID_ONLY = ["id"]


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_json(obj: Any) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


def _unb64url_json(text: str) -> Any:
    padded = text + "=" * (-len(text) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))


@dataclass
class _Resp:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json; charset=utf-8"
    units: int = 0


class GraphError(Exception):
    """An error answered in Graph's shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class _LoginError(Exception):
    """An error answered in the token endpoint's (AAD) shape."""

    def __init__(self, status: int, error: str, aadsts: int, description: str):
        super().__init__(description)
        self.status, self.error, self.aadsts, self.description = status, error, aadsts, description


def _require_eventual(headers: Mapping[str, str]) -> None:
    """`$count` is an advanced query: Graph refuses it without `ConsistencyLevel: eventual`."""
    if headers.get("consistencylevel", "").lower() != "eventual":
        raise _bad("$count is not currently supported.")


def _bad(message: str) -> GraphError:
    return GraphError(400, "Request_BadRequest", message)


def _not_found(oid: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{oid}' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


# ----------------------------------------------------------------------------------------
# Tenant state


class _Tenant:
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
        # (GRAPH.md); the version, and the manager before the change (for manager@delta)
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
            "subscribedSkus": copy.deepcopy(self.skus_now()),
        }

    # -- mutations
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


# ----------------------------------------------------------------------------------------
# Throttling


class _Bucket:
    """A token bucket: `capacity` resource units refilled over `window` seconds."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, capacity: float, window: float):
        self.capacity = capacity
        self.rate = capacity / window
        self.level = capacity
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        return 0.0 if self.level >= cost else (cost - self.level) / self.rate

    def used(self) -> float:
        return 1.0 - self.level / self.capacity


@dataclass
class _Token:
    tenant_id: str
    client_id: str
    expires_at: float
    user_id: str | None = None


@dataclass
class _DeviceCode:
    tenant_id: str
    client_id: str
    scope: str
    user_code: str
    expires_at: float
    user_id: str | None = None


@dataclass
class _Refresh:
    tenant_id: str
    client_id: str
    user_id: str
    scope: str
    state: str = "ok"  # ok | revoked | expired


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


# ----------------------------------------------------------------------------------------
# The server


class FakeGraph:
    """A local HTTPS Microsoft Graph + Entra ID token endpoint for one or more tenants."""

    def __init__(
        self,
        tenants: list[dict],
        *,
        secrets: Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path,
        latency: float = 0.0,
        seed: int = 0,
        certificates: Mapping[str, Mapping[str, str]] | None = None,
        throttle: bool = False,
        throttle_scale: float = 1.0,
        requests_per_second: float = REQUESTS_PER_SECOND,
        fail_every_nth_429: int | None = None,
        error_rate_503: float = 0.0,
        drop_rate: float = 0.0,
        empty_page_rate: float = 0.0,
        fault_retry_after: float = 0.2,
        delta_page_size: int = 200,
        delta_member_page_size: int = 250,
        delta_token_ttl: float = 7 * 86400.0,
        device_code_interval: int = 5,
        delta_repeat_rate: float = 0.01,
        count_lag: float = 2.0,
        count_offset: int = 0,
        count_supported: bool = True,
        script: Callable[[str, str, dict[str, str], Mapping[str, str], bytes], Any] | None = None,
    ):
        """Graph's documented behaviour is the default, and no easier. Options a test turns:

        - delta_repeat_rate: the share of a delta round's objects listed again on a later
          page (Graph: "the same item can show up anywhere in the nextLink sequence");
        - count_lag: seconds a creation or deletion takes to reach `$count` (eventually
          consistent; Microsoft gives no figure: seconds to minutes); count_offset: a skew
          added to every users/groups `$count`, for a test of a lost-pages check;
        - count_supported=False: `$count` answers 400, as in Azure AD B2C tenants;
        - script(method, path, query, headers, body): answers Graph calls (after sign-in and
          the bearer token's check) with (status, JSON body[, headers]) where it returns one,
          for conformance tests that replay Microsoft's documented response shapes through
          the real client; None falls through to the fake's own directory.
        """
        self._tenants: dict[str, _Tenant] = {t["tenant_id"]: _Tenant(t) for t in tenants}
        self._secrets = dict(secrets)
        self._host = host
        self._requested_port = port
        self.state_dir = Path(state_dir)
        self.latency = latency
        self.throttle = throttle
        self.throttle_scale = throttle_scale
        # with `throttle`: the per-app request ceiling (tests lower it, as throttle_scale does
        # for resource units)
        self.requests_per_second = requests_per_second
        self.fail_every_nth_429 = fail_every_nth_429
        self.error_rate_503 = error_rate_503
        self.drop_rate = drop_rate
        self.empty_page_rate = empty_page_rate
        self.fault_retry_after = fault_retry_after
        self.delta_page_size = delta_page_size
        self.delta_member_page_size = delta_member_page_size
        self.delta_token_ttl = delta_token_ttl
        self.device_code_interval = device_code_interval
        self.delta_repeat_rate = delta_repeat_rate
        self.count_lag = count_lag
        self.count_offset = count_offset
        self.count_supported = count_supported
        self.script = script
        self._seed = seed
        self._sessions_started = 0
        self._certs: dict[str, dict[str, Any]] = {}
        for tid, certs in (certificates or {}).items():
            for pem in certs.values():
                self.register_certificate(tid, pem)
        self._fault_rng = random.Random(seed)
        self._batch_rng = random.Random(seed + 1)
        self._id_rng = random.Random(seed + 2)
        self._graph_requests = 0
        self._lock = threading.RLock()
        self._tokens: dict[str, _Token] = {}
        self._device_codes: dict[str, _DeviceCode] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._buckets: dict[Any, _Bucket] = {}
        self._withdrawn: dict[str, set[str]] = {}  # tenant id -> permissions taken away
        self._delta_sessions: collections.OrderedDict[str, _DeltaSession] = (
            collections.OrderedDict()
        )
        self._stats = self._empty_stats()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.ca_path = self.state_dir / "ca.pem"

    # -- lifecycle
    def start(self) -> FakeGraph:
        if self._server is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = self._load_or_make_ca()
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        cert_file = self.state_dir / "server.pem"
        key_file = self.state_dir / "server-key.pem"
        _write_private(cert_file, b"".join(b.bytes() for b in server_cert.cert_chain_pems))
        _write_private(key_file, server_cert.private_key_pem.bytes())
        app = self._build_app()
        config = uvicorn.Config(
            app,
            host=self._host,
            port=self._requested_port,
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            log_level="warning",
            lifespan="off",
            proxy_headers=False,
            access_log=False,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        thread = threading.Thread(target=server.run, name="fakegraph", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"fake Graph failed to start on {self._host}:{self._requested_port}"
                )
            time.sleep(0.005)
        self._server, self._thread = server, thread
        self.port = server.servers[0].sockets[0].getsockname()[1]
        info = {
            "base_url": self.base_url,
            "ca_path": str(self.ca_path),
            "tenants": [
                {"tenant_id": t.tenant_id, "client_id": t.client_id, "name": t.name}
                for t in self._tenants.values()
            ],
        }
        (self.state_dir / "fakegraph.json").write_text(json.dumps(info, indent=2))
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        server.force_exit = True  # idle keep-alive TLS connections would hold shutdown for 30 s
        thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("fake Graph is not started")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{self.port}"

    def _load_or_make_ca(self) -> trustme.CA:
        """Reuse the CA kept in state_dir (clients keep trusting it across restarts)."""
        key_path = self.state_dir / "ca-key.pem"
        if self.ca_path.is_file() and key_path.is_file():
            try:
                return trustme.CA.from_pem(self.ca_path.read_bytes(), key_path.read_bytes())
            except ValueError:
                log.warning("fake Graph: unreadable CA in %s, making a new one", self.state_dir)
        ca = trustme.CA(organization_name="sync-pipeline fake Graph")
        _write_private(key_path, ca.private_key_pem.bytes())
        tmp = self.ca_path.with_suffix(".tmp")
        tmp.write_bytes(ca.cert_pem.bytes())
        tmp.replace(self.ca_path)
        return ca

    # -- stats
    @staticmethod
    def _empty_stats() -> dict:
        return {
            "requests": collections.Counter(),
            "status": collections.Counter(),
            "resource_units": 0,
            "resource_units_by_tenant": collections.Counter(),
            "throttled": 0,
            "throttled_requests_per_second": 0,
            "faults": collections.Counter(),
            "tokens_issued": 0,
        }

    @property
    def stats(self) -> dict:
        with self._lock:
            s = self._stats
            return {
                "requests": dict(s["requests"]),
                "status": {str(k): v for k, v in s["status"].items()},
                "resource_units": s["resource_units"],
                "resource_units_by_tenant": dict(s["resource_units_by_tenant"]),
                "throttled": s["throttled"],
                "throttled_requests_per_second": s["throttled_requests_per_second"],
                "faults": dict(s["faults"]),
                "tokens_issued": s["tokens_issued"],
                "total_requests": sum(s["requests"].values()),
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = self._empty_stats()

    # -- admin (Python API; the same operations are under /_admin/)
    def tenant(self, tenant_id: str) -> dict:
        """The tenant's current document (a copy)."""
        with self._lock:
            return self._tenant(tenant_id).document()

    def mutate(self, tenant_id: str, ops: list[Mapping[str, Any]]) -> list[Any]:
        """Apply admin ops in order; returns each op's result (the affected id)."""
        with self._lock:
            tenant = self._tenant(tenant_id)
            return [tenant.apply(op, self._id_rng) for op in ops]

    def add_user(self, tenant_id: str, user: Mapping[str, Any]) -> str:
        return self.mutate(tenant_id, [{"op": "add_user", "user": dict(user)}])[0]

    def update_user(self, tenant_id: str, user_id: str, **changes: Any) -> str:
        return self.mutate(tenant_id, [{"op": "update_user", "id": user_id, "changes": changes}])[0]

    def delete_user(self, tenant_id: str, user_id: str, *, reason: str = "deleted") -> str:
        return self.mutate(tenant_id, [{"op": "delete_user", "id": user_id, "reason": reason}])[0]

    def restore_user(self, tenant_id: str, user_id: str) -> str:
        """Restore a soft-deleted user (delete_user(..., reason="changed")) with its links."""
        return self.mutate(tenant_id, [{"op": "restore_user", "id": user_id}])[0]

    def restore_group(self, tenant_id: str, group_id: str) -> str:
        return self.mutate(tenant_id, [{"op": "restore_group", "id": group_id}])[0]

    def add_members(self, tenant_id: str, group_id: str, member_ids: list[str]) -> str:
        ops = [{"op": "add_members", "group_id": group_id, "member_ids": list(member_ids)}]
        return self.mutate(tenant_id, ops)[0]

    def remove_members(self, tenant_id: str, group_id: str, member_ids: list[str]) -> str:
        ops = [{"op": "remove_members", "group_id": group_id, "member_ids": list(member_ids)}]
        return self.mutate(tenant_id, ops)[0]

    def set_manager(self, tenant_id: str, user_id: str, manager_id: str | None) -> str:
        ops = [{"op": "set_manager", "user_id": user_id, "manager_id": manager_id}]
        return self.mutate(tenant_id, ops)[0]

    def add_group(
        self, tenant_id: str, group: Mapping[str, Any], member_ids: list[str] | None = None
    ) -> str:
        ops = [{"op": "add_group", "group": dict(group), "member_ids": list(member_ids or [])}]
        return self.mutate(tenant_id, ops)[0]

    def update_group(self, tenant_id: str, group_id: str, **changes: Any) -> str:
        ops = [{"op": "update_group", "id": group_id, "changes": changes}]
        return self.mutate(tenant_id, ops)[0]

    def delete_group(self, tenant_id: str, group_id: str, *, reason: str = "deleted") -> str:
        return self.mutate(tenant_id, [{"op": "delete_group", "id": group_id, "reason": reason}])[0]

    def expire_delta_tokens(self, tenant_id: str, *, mode: str = "410") -> None:
        """Invalidate every delta/next link of the tenant: 410 Gone or 400 syncStateNotFound."""
        if mode not in ("410", "400"):
            raise ValueError(f"mode must be '410' or '400', got {mode!r}")
        with self._lock:
            tenant = self._tenant(tenant_id)
            tenant.delta_epoch += 1
            tenant.expire_mode = mode

    # The application permission each Graph read needs (the least-privileged one the Graph
    # reference names); a withdrawn one makes those reads 403 `Authorization_RequestDenied`,
    # with Graph's own message, which does not say which permission is missing.
    PERMISSIONS = (
        ("/subscribedSkus", "Organization.Read.All"),
        ("/organization", "Organization.Read.All"),
        ("/groups", "GroupMember.Read.All"),
        ("/users", "User.Read.All"),
    )
    # Listing the members of a hidden-membership group (`visibility: HiddenMembership`, some
    # Microsoft 365 groups) needs this one besides GroupMember.Read.All (the note in
    # group-list-members.md and group-list-transitivemembers.md). Which status Graph answers
    # without it is not documented: the fake answers 403 Authorization_RequestDenied to
    # `/groups/{id}/members` and `/transitiveMembers` (and their `$count`). In a groups delta
    # round with `members` selected, Microsoft documents nothing either; the fake takes the
    # harder plausible reading: the group's entry comes without `members@delta`, silently,
    # exactly as for a group with no members (as `memberOf` is known to leave hidden groups out
    # without an error), so a client cannot trust a delta round for those groups' members.
    # Simplification: a parent's transitiveMembers still list a hidden group's members.
    HIDDEN_MEMBERS = "Member.Read.Hidden"

    def withdraw_permissions(self, tenant_id: str, permissions: list[str]) -> list[str]:
        """Take permissions away from the tenant's app (admin consent revoked for them);
        returns every permission now withdrawn."""
        known = {p for _, p in self.PERMISSIONS} | {self.HIDDEN_MEMBERS}
        unknown = sorted(set(permissions) - known)
        if unknown:
            raise ValueError(f"unknown permission(s) {unknown}; known: {sorted(known)}")
        with self._lock:
            self._tenant(tenant_id)
            withdrawn = self._withdrawn.setdefault(tenant_id, set())
            withdrawn.update(permissions)
            return sorted(withdrawn)

    def grant_permissions(self, tenant_id: str, permissions: list[str]) -> list[str]:
        """Give withdrawn permissions back; returns every permission still withdrawn."""
        with self._lock:
            self._tenant(tenant_id)
            withdrawn = self._withdrawn.setdefault(tenant_id, set())
            withdrawn.difference_update(permissions)
            return sorted(withdrawn)

    def _require_permission(self, tenant: _Tenant, path: str) -> None:
        withdrawn = self._withdrawn.get(tenant.tenant_id)
        if not withdrawn:
            return
        for prefix, permission in self.PERMISSIONS:
            if path.startswith(prefix) and permission in withdrawn:
                raise GraphError(
                    403,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                )

    def _members_hidden(self, tenant: _Tenant, gid: str) -> bool:
        """True when the app may not list this group's members (see HIDDEN_MEMBERS)."""
        group = tenant.groups.get(gid) or {}
        withdrawn = self._withdrawn.get(tenant.tenant_id, set())
        return group.get("visibility") == "HiddenMembership" and self.HIDDEN_MEMBERS in withdrawn

    def expire_access_tokens(self, tenant_id: str | None = None) -> None:
        with self._lock:
            for token in self._tokens.values():
                if tenant_id is None or token.tenant_id == tenant_id:
                    token.expires_at = 0.0

    def revoke_refresh_tokens(self, tenant_id: str, *, reason: str = "revoked") -> None:
        """Refresh tokens then fail with invalid_grant (AADSTS50173 revoked, 700082 expired)."""
        if reason not in ("revoked", "expired"):
            raise ValueError(f"reason must be 'revoked' or 'expired', got {reason!r}")
        with self._lock:
            for rt in self._refresh.values():
                if rt.tenant_id == tenant_id:
                    rt.state = reason

    def pending_user_codes(self, tenant_id: str) -> list[str]:
        """The user codes of device sign-ins waiting for approval (what the admin would type)."""
        with self._lock:
            return [
                dc.user_code
                for dc in self._device_codes.values()
                if dc.tenant_id == tenant_id and dc.user_id is None
            ]

    def approve_device_code(self, user_code: str, *, user_id: str | None = None) -> str:
        """Sign a user in for a pending device code (default: the tenant's first enabled user)."""
        with self._lock:
            for dc in self._device_codes.values():
                if dc.user_code == user_code.strip().upper():
                    tenant = self._tenant(dc.tenant_id)
                    if user_id is None:
                        user_id = next(
                            u["id"]
                            for u in tenant.user_list()
                            if u.get("accountEnabled") and u["userType"] == "Member"
                        )
                    if user_id not in tenant.users:
                        raise KeyError(f"no user {user_id}")
                    dc.user_id = user_id
                    return user_id
            raise KeyError(f"no pending device code {user_code!r}")

    def register_certificate(self, tenant_id: str, cert_pem: str | bytes) -> str:
        """Accept client assertions signed by this certificate's key; returns the SHA-1 hex."""
        data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
        cert = x509.load_pem_x509_certificate(data)
        sha1 = cert.fingerprint(hashes.SHA1()).hex().upper()  # x5t is SHA-1
        sha256 = cert.fingerprint(hashes.SHA256()).hex().upper()
        entry = {"key": cert.public_key(), "sha1": sha1}
        certs = self._certs.setdefault(tenant_id, {})
        certs[sha1] = entry
        certs[sha256] = entry
        return sha1

    def _tenant(self, tenant_id: str) -> _Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise KeyError(f"unknown tenant {tenant_id}")
        return tenant

    # -- ASGI
    def _build_app(self) -> Callable:
        fake = self

        class Endpoint:
            async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
                request = Request(scope, receive)
                body = await request.body()
                path = scope["path"]
                if fake.latency and not path.startswith("/_admin"):
                    await asyncio.sleep(fake.latency)
                headers = {k.lower(): v for k, v in request.headers.items()}
                base = f"https://{headers.get('host') or fake._netloc()}"
                resp = fake.handle(
                    scope["method"],
                    path,
                    scope.get("query_string", b"").decode(),
                    headers,
                    body,
                    base,
                )
                if resp is _DROP:
                    raw_send = scope.get("fakegraph.send")
                    cycle = getattr(raw_send, "__self__", None)
                    transport = getattr(cycle, "transport", None)
                    if transport is not None:
                        cycle.disconnected = True  # type: ignore[union-attr]
                        transport.close()
                        return
                    resp = _Resp(502, b"")
                assert isinstance(resp, _Resp)
                await Response(
                    resp.body,
                    status_code=resp.status,
                    headers=resp.headers,
                    media_type=resp.media_type,
                )(scope, receive, send)

        inner = Starlette(routes=[Route("/{path:path}", endpoint=Endpoint())])

        async def app(scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] == "http":
                scope["fakegraph.send"] = send
            await inner(scope, receive, send)

        return app

    def _netloc(self) -> str:
        return f"{self._host}:{self.port}"

    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, base: str
    ) -> _Resp | object:
        """Answer one HTTP request (synchronous; the ASGI endpoint and $batch call this)."""
        request_id = str(uuid.uuid4())
        with self._lock:
            if path.startswith("/_admin/") or path == "/_admin":
                resp = self._admin(method, path, body)
                endpoint = f"{method} /_admin"
            elif path.startswith("/v1.0/") or path == "/v1.0":
                resp = self._graph_outer(
                    method, path[len("/v1.0") :], query, headers, body, base, request_id
                )
                endpoint = f"{method} /v1.0{_normalise(path[len('/v1.0') :])}"
            else:
                resp = self._login(method, path, body, base, headers, request_id)
                endpoint = f"{method} {_normalise_login(path)}"
            if not endpoint.endswith("/_admin"):
                self._stats["requests"][endpoint] += 1
            if resp is _DROP:
                self._stats["status"]["dropped"] += 1
                return resp
            assert isinstance(resp, _Resp)
            if not endpoint.endswith("/_admin"):
                self._stats["status"][resp.status] += 1
        resp.headers.setdefault("request-id", request_id)
        if "client-request-id" in headers:
            resp.headers["client-request-id"] = headers["client-request-id"]
        return resp

    # -- admin HTTP API
    def _admin(self, method: str, path: str, body: bytes) -> _Resp:
        parts = [p for p in path.split("/") if p][1:]
        try:
            payload = json.loads(body) if body else {}
            if method == "GET" and parts == ["stats"]:
                return _json_resp(200, self.stats)
            if method == "POST" and parts == ["stats", "reset"]:
                self.reset_stats()
                return _json_resp(200, {"ok": True})
            if method == "GET" and parts == ["tenants"]:
                return _json_resp(
                    200,
                    [
                        {
                            "tenant_id": t.tenant_id,
                            "client_id": t.client_id,
                            "name": t.name,
                            "users": len(t.users),
                            "groups": len(t.groups),
                            "version": t.version,
                        }
                        for t in self._tenants.values()
                    ],
                )
            if method == "POST" and parts == ["device", "approve"]:
                uid = self.approve_device_code(payload["user_code"], user_id=payload.get("user_id"))
                return _json_resp(200, {"user_id": uid})
            if len(parts) >= 2 and parts[0] == "tenants":
                tid = parts[1]
                self._tenant(tid)
                action = parts[2] if len(parts) > 2 else ""
                if method == "GET" and action == "":
                    return _json_resp(200, self.tenant(tid))
                if method == "POST" and action == "mutate":
                    results = self.mutate(tid, payload.get("ops", []))
                    return _json_resp(
                        200, {"results": results, "version": self._tenants[tid].version}
                    )
                if method == "POST" and action == "expire-delta-tokens":
                    self.expire_delta_tokens(tid, mode=str(payload.get("mode", "410")))
                    return _json_resp(200, {"ok": True})
                if method == "POST" and action == "expire-access-tokens":
                    self.expire_access_tokens(tid)
                    return _json_resp(200, {"ok": True})
                if method == "POST" and action == "revoke-refresh-tokens":
                    self.revoke_refresh_tokens(tid, reason=payload.get("reason", "revoked"))
                    return _json_resp(200, {"ok": True})
                if method == "POST" and action == "permissions":
                    # {"withdraw": [...]} and/or {"grant": [...]}
                    withdrawn = self.withdraw_permissions(tid, list(payload.get("withdraw", [])))
                    if payload.get("grant"):
                        withdrawn = self.grant_permissions(tid, list(payload["grant"]))
                    return _json_resp(200, {"withdrawn": withdrawn})
            return _json_resp(404, {"error": f"no admin endpoint {method} {path}"})
        except KeyError as exc:
            return _json_resp(404, {"error": str(exc)})
        except (ValueError, TypeError) as exc:
            return _json_resp(400, {"error": str(exc)})

    # -- login
    def _login(
        self,
        method: str,
        path: str,
        body: bytes,
        base: str,
        headers: Mapping[str, str],
        request_id: str,
    ) -> _Resp:
        parts = [p for p in path.split("/") if p]
        tid = parts[0] if parts else ""
        rest = "/".join(parts[1:])
        try:
            if method == "GET" and rest == "v2.0/.well-known/openid-configuration":
                self._login_tenant(tid)
                return _json_resp(200, self._openid_config(base, tid))
            if method == "POST" and rest == "oauth2/v2.0/token":
                form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
                return self._token(tid, form, base)
            if method == "POST" and rest == "oauth2/v2.0/devicecode":
                form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
                return self._devicecode(tid, form)
        except _LoginError as exc:
            return self._login_error(exc, base, request_id)
        return _json_resp(
            404, {"error": "not_found", "error_description": f"no endpoint {method} {path}"}
        )

    def _login_error(self, exc: _LoginError, base: str, request_id: str) -> _Resp:
        now = dt.datetime.now(dt.UTC)
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return _json_resp(
            exc.status,
            {
                "error": exc.error,
                "error_description": f"AADSTS{exc.aadsts}: {exc.description} Trace ID: {trace} "
                f"Correlation ID: {corr} Timestamp: {stamp}",
                "error_codes": [exc.aadsts],
                "timestamp": stamp,
                "trace_id": trace,
                "correlation_id": corr,
                "error_uri": f"{base}/error?code={exc.aadsts}",
            },
            headers={"x-ms-request-id": request_id},
        )

    def _login_tenant(self, tid: str) -> _Tenant:
        tenant = self._tenants.get(tid)
        if tenant is None:
            raise _LoginError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tid}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud. Check with your "
                "subscription administrator, this may happen if there are no "
                "active subscriptions for the tenant.",
            )
        return tenant

    @staticmethod
    def _openid_config(base: str, tid: str) -> dict:
        root = f"{base}/{tid}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "oid",
            ],
            "kerberos_endpoint": f"{root}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def _check_client(self, tenant: _Tenant, client_id: str) -> None:
        if client_id != tenant.client_id:
            raise _LoginError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant.name}'. This can happen if the application has "
                "not been installed by the administrator of the tenant or consented "
                "to by any user in the tenant. You may have sent your "
                "authentication request to the wrong tenant.",
            )

    def _authenticate_client(
        self, tenant: _Tenant, form: Mapping[str, str], base: str, *, required: bool
    ) -> None:
        client_id = form.get("client_id", "")
        if "client_secret" in form:
            if form["client_secret"] != self._secrets.get(tenant.tenant_id):
                raise _LoginError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent "
                    "in the request is the client secret value, not the client "
                    "secret ID, for a secret added to app "
                    f"'{client_id}'.",
                )
            return
        if "client_assertion" in form:
            self._verify_assertion(tenant, form, client_id)
            return
        if required:
            raise _LoginError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
            )

    def _verify_assertion(self, tenant: _Tenant, form: Mapping[str, str], client_id: str) -> None:
        if form.get("client_assertion_type") != _JWT_BEARER:
            raise _LoginError(
                400, "invalid_request", 50027, f"client_assertion_type must be '{_JWT_BEARER}'."
            )
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise _LoginError(401, "invalid_client", 50027, f"Invalid JWT token. {exc}") from exc
        thumb = ""
        for name in ("x5t#S256", "x5t"):
            if name in header:
                try:
                    raw = base64.urlsafe_b64decode(header[name] + "=" * (-len(header[name]) % 4))
                except (binascii.Error, ValueError):
                    raw = b""
                thumb = raw.hex().upper()
                break
        entry = self._certs.get(tenant.tenant_id, {}).get(thumb)
        if entry is None:
            raise _LoginError(
                401,
                "invalid_client",
                700027,
                f"The certificate with identifier used to sign the client assertion "
                f"is not registered on application. [Reason - The key was not "
                f"found., Thumbprint of key used by client: '{thumb}'].",
            )
        try:
            claims = jwt.decode(
                assertion,
                entry["key"],
                algorithms=["RS256", "PS256", "ES256", "RS384", "RS512"],
                options={"verify_aud": False, "require": ["exp", "aud", "iss", "sub"]},
                leeway=300,
            )
        except jwt.ExpiredSignatureError as exc:
            raise _LoginError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            ) from exc
        except jwt.PyJWTError as exc:
            raise _LoginError(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation. {exc}",
            ) from exc
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(
            str(a).rstrip("/").endswith(f"/{tenant.tenant_id}/oauth2/v2.0/token") for a in auds
        ):
            raise _LoginError(
                401,
                "invalid_client",
                700021,
                f"Client assertion application identifier doesn't match "
                f"'client_id' parameter or audience is wrong: {aud}.",
            )
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise _LoginError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )

    def _issue_access(self, tenant: _Tenant, client_id: str, user_id: str | None = None) -> str:
        token = _secrets.token_urlsafe(48)
        self._tokens[token] = _Token(
            tenant.tenant_id, client_id, time.time() + TOKEN_LIFETIME, user_id
        )
        self._stats["tokens_issued"] += 1
        return token

    def _token(self, tid: str, form: Mapping[str, str], base: str) -> _Resp:
        tenant = self._login_tenant(tid)
        grant = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        self._check_client(tenant, client_id)
        if grant == "client_credentials":
            self._authenticate_client(tenant, form, base, required=True)
            scopes = form.get("scope", "").split()
            if not scopes or not all(s.endswith("/.default") for s in scopes):
                raise _LoginError(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {form.get('scope', '')} is not "
                    "valid. Client credential flows must have a scope value with "
                    "/.default suffixed to the resource identifier "
                    "(application ID URI).",
                )
            token = self._issue_access(tenant, client_id)
            return _json_resp(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": TOKEN_LIFETIME,
                    "ext_expires_in": TOKEN_LIFETIME,
                    "access_token": token,
                },
            )
        if grant == _DEVICE_GRANT:
            self._authenticate_client(tenant, form, base, required=False)
            code = form.get("device_code", "")
            dc = self._device_codes.get(code)
            if dc is None or dc.tenant_id != tid:
                raise _LoginError(
                    400, "invalid_grant", 70000, "Provided grant is invalid or malformed."
                )
            if time.time() > dc.expires_at:
                del self._device_codes[code]
                raise _LoginError(400, "expired_token", 70019, "Verification code expired.")
            if dc.user_id is None:
                raise _LoginError(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            del self._device_codes[code]
            return self._delegated(
                tenant, client_id, dc.user_id, form.get("scope") or dc.scope, base
            )
        if grant == "refresh_token":
            self._authenticate_client(tenant, form, base, required=False)
            rt = self._refresh.get(form.get("refresh_token", ""))
            if rt is None or rt.tenant_id != tid or rt.state == "expired":
                raise _LoginError(
                    400,
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity. The token "
                    "was issued on 2026-01-01T00:00:00Z and was inactive for "
                    "90.00:00:00.",
                )
            if rt.state == "revoked" or rt.user_id not in tenant.users:
                raise _LoginError(
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a "
                    "fresh auth token is needed. The user might have changed or "
                    "reset their password.",
                )
            return self._delegated(
                tenant, client_id, rt.user_id, form.get("scope") or rt.scope, base
            )
        raise _LoginError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'.",
        )

    def _delegated(
        self, tenant: _Tenant, client_id: str, user_id: str, scope: str, base: str
    ) -> _Resp:
        user = tenant.users[user_id]
        now = int(time.time())
        claims = {
            "aud": client_id,
            "iss": f"{base}/{tenant.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "name": user.get("displayName"),
            "oid": user_id,
            "preferred_username": user.get("userPrincipalName"),
            "sub": _b64url(hashlib.sha256(f"{user_id}:{client_id}".encode()).digest()),
            "tid": tenant.tenant_id,
            "ver": "2.0",
        }
        id_token = ".".join((_b64url_json({"typ": "JWT", "alg": "none"}), _b64url_json(claims), ""))
        refresh = _secrets.token_urlsafe(64)
        self._refresh[refresh] = _Refresh(tenant.tenant_id, client_id, user_id, scope)
        reserved = {"openid", "profile", "offline_access"}
        granted = " ".join(s for s in scope.split() if s not in reserved)
        return _json_resp(
            200,
            {
                "token_type": "Bearer",
                "scope": granted,
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": self._issue_access(tenant, client_id, user_id),
                "refresh_token": refresh,
                "id_token": id_token,
                "client_info": _b64url_json({"uid": user_id, "utid": tenant.tenant_id}),
            },
        )

    def _devicecode(self, tid: str, form: Mapping[str, str]) -> _Resp:
        tenant = self._login_tenant(tid)
        self._check_client(tenant, form.get("client_id", ""))
        device_code = _secrets.token_urlsafe(48)
        user_code = "".join(_secrets.choice(string.ascii_uppercase) for _ in range(9))
        expires_in = 900
        self._device_codes[device_code] = _DeviceCode(
            tid, tenant.client_id, form.get("scope", ""), user_code, time.time() + expires_in
        )
        uri = "https://microsoft.com/devicelogin"
        return _json_resp(
            200,
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": uri,
                "expires_in": expires_in,
                "interval": self.device_code_interval,
                "message": f"To sign in, use a web browser to open the page {uri} and enter "
                f"the code {user_code} to authenticate.",
            },
        )

    # -- Graph
    def _graph_error(
        self, exc: GraphError, request_id: str, client_request_id: str | None
    ) -> _Resp:
        body = {
            "error": {
                "code": exc.code,
                "message": exc.message,
                "innerError": {
                    "date": _now_iso(),
                    "request-id": request_id,
                    "client-request-id": client_request_id or request_id,
                },
            }
        }
        return _json_resp(exc.status, body, headers=dict(exc.headers))

    def _authorise(self, headers: Mapping[str, str]) -> _Token:
        challenge = {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.'
            'microsoftonline.com/common/oauth2/authorize", '
            'client_id="00000003-0000-0000-c000-000000000000"'
        }
        auth = headers.get("authorization", "")
        if not auth:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
        scheme, _, token = auth.partition(" ")
        record = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if record is None:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).",
                challenge,
            )
        if record.expires_at < time.time():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
                challenge,
            )
        return record

    def _graph_outer(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        base: str,
        request_id: str,
    ) -> _Resp | object:
        crid = headers.get("client-request-id")
        if self.drop_rate and self._fault_rng.random() < self.drop_rate:
            self._stats["faults"]["drop"] += 1
            return _DROP
        if self.script is not None:
            try:
                self._authorise(headers)
            except GraphError as exc:
                return self._graph_error(exc, request_id, crid)
            answer = self.script(method, path, _parse_query(query), headers, body)
            if answer is not None:
                status, content, *extra = answer
                if isinstance(content, str):
                    return _Resp(status, content.encode(), {}, "text/plain; charset=utf-8")
                return _json_resp(status, content, dict(extra[0]) if extra else None)
        if method == "POST" and path == "/$batch":
            try:
                token = self._authorise(headers)
                self._admit_requests(token, 1)  # the envelope counts (REQUESTS_PER_SECOND)
                return self._batch(token, body, base, headers)
            except GraphError as exc:
                return self._graph_error(exc, request_id, crid)
        return self._graph(method, path, query, headers, body, base, request_id, None)

    def _graph(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        base: str,
        request_id: str,
        token: _Token | None,
    ) -> _Resp:
        crid = headers.get("client-request-id")
        units = 0
        try:
            if token is None or "authorization" in headers:
                token = self._authorise(headers)
            tenant = self._tenants[token.tenant_id]
            self._require_permission(tenant, path)
            self._graph_requests += 1
            if self.error_rate_503 and self._fault_rng.random() < self.error_rate_503:
                self._stats["faults"]["503"] += 1
                raise GraphError(
                    503,
                    "serviceNotAvailable",
                    "Service unavailable. Please retry later.",
                    {"Retry-After": self._fault_wait()},
                )
            if self.fail_every_nth_429 and self._graph_requests % self.fail_every_nth_429 == 0:
                self._stats["faults"]["429"] += 1
                raise GraphError(
                    429,
                    "TooManyRequests",
                    "Too many requests. Please retry after the time given in Retry-After.",
                    {"Retry-After": self._fault_wait()},
                )
            opts = _parse_query(query)
            units = _cost(method, path, opts)
            extra = self._charge(token, tenant, units)
            resp = self._route(method, path, opts, headers, body, base, tenant)
            resp.headers.update(extra)
        except GraphError as exc:
            resp = self._graph_error(exc, request_id, crid)
            if exc.status == 429 and units:
                units = 0
        resp.headers["x-ms-resource-unit"] = str(units)
        resp.units = units
        return resp

    def _fault_wait(self) -> str:
        return f"{self.fault_retry_after * (0.5 + self._fault_rng.random()):.3f}"

    def _admit_requests(self, token: _Token, n: int) -> None:
        """The app's requests-per-second ceiling across all its tenants: 429 above it."""
        if not self.throttle:
            return
        key = ("requests", token.client_id)
        bucket = self._buckets.get(key)
        if bucket is None:
            capacity = max(1.0, float(self.requests_per_second))
            bucket = self._buckets[key] = _Bucket(capacity, 1.0)
        bucket.refill(time.monotonic())
        wait = bucket.wait_for(n)
        if wait > 0:
            self._stats["throttled"] += 1
            self._stats["throttled_requests_per_second"] += 1
            raise GraphError(
                429,
                "TooManyRequests",
                "Too many requests. Application has exceeded its request rate limit.",
                {
                    "Retry-After": f"{max(wait, 0.001):.3f}",
                    "x-ms-throttle-scope": f"Application/ReadWrite/{token.client_id}/"
                    f"{token.tenant_id}",
                },
            )
        bucket.level -= n

    def _charge(self, token: _Token, tenant: _Tenant, units: int) -> dict[str, str]:
        self._admit_requests(token, 1)
        if self.throttle:
            now = time.monotonic()
            key = (token.client_id, tenant.tenant_id)
            bucket = self._buckets.get(key)
            if bucket is None:
                limit = max(1.0, tenant.size_limit() * self.throttle_scale)
                bucket = self._buckets[key] = _Bucket(limit, TENANT_WINDOW)
            glob = self._buckets.get(token.client_id)
            if glob is None:
                limit = max(1.0, GLOBAL_LIMIT * self.throttle_scale)
                glob = self._buckets[token.client_id] = _Bucket(limit, GLOBAL_WINDOW)
            bucket.refill(now)
            glob.refill(now)
            wait = max(bucket.wait_for(units), glob.wait_for(units))
            if wait > 0:
                self._stats["throttled"] += 1
                raise GraphError(
                    429,
                    "TooManyRequests",
                    "Too many requests. Application has exceeded its "
                    "resource unit limit for this tenant.",
                    {
                        "Retry-After": f"{max(wait, 0.001):.3f}",
                        "x-ms-throttle-limit-percentage": "1.0",
                    },
                )
            bucket.level -= units
            glob.level -= units
            self._stats["resource_units"] += units
            self._stats["resource_units_by_tenant"][tenant.tenant_id] += units
            used = max(bucket.used(), glob.used())
            if used >= 0.8:
                return {"x-ms-throttle-limit-percentage": f"{used:.2f}"}
            return {}
        self._stats["resource_units"] += units
        self._stats["resource_units_by_tenant"][tenant.tenant_id] += units
        return {}

    def _route(
        self,
        method: str,
        path: str,
        opts: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
        base: str,
        tenant: _Tenant,
    ) -> _Resp:
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        if method != "GET":
            raise GraphError(
                405,
                "Request_BadRequest",
                f"The HTTP method '{method}' is not allowed for this resource.",
            )
        for bad in ("$skip", "$search", "$orderby"):
            if bad in opts and not (len(parts) == 2 and parts[1] == "delta"):
                raise _bad(f"'{bad}' is not supported by the service.")
        if not parts:
            raise _not_found(path)
        head = parts[0]
        if head == "users":
            return self._route_users(parts, opts, headers, base, tenant)
        if head == "groups":
            return self._route_groups(parts, opts, headers, base, tenant)
        if head == "subscribedSkus" and len(parts) == 1:
            select = _select(opts, None)
            value = [_project_plain(s, select) for s in tenant.skus_now()]
            return _json_resp(
                200, {"@odata.context": f"{base}/v1.0/$metadata#subscribedSkus", "value": value}
            )
        if head == "organization" and len(parts) == 1:
            return _json_resp(
                200,
                {
                    "@odata.context": f"{base}/v1.0/$metadata#organization",
                    "value": [{"id": tenant.tenant_id, "displayName": tenant.name}],
                },
            )
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{head}'.")

    def _route_users(
        self,
        parts: list[str],
        opts: dict[str, str],
        headers: Mapping[str, str],
        base: str,
        tenant: _Tenant,
    ) -> _Resp:
        if len(parts) == 1:
            select = _select(opts, USER_PROPS)
            expand = _expand(opts)
            return self._list(
                tenant.user_list(),
                opts,
                headers,
                base,
                "users",
                lambda u: self._render_user(tenant, u, select, expand),
                _context(base, "users", select),
                expand is not None,
                tenant,
            )
        if parts[1] == "$count" and len(parts) == 2:
            return self._collection_count(tenant, "users", headers)
        if parts[1] == "delta" and len(parts) == 2:
            return self._delta("users", opts, headers, base, tenant)
        user = tenant.user_by_key(parts[1])
        if user is None:
            raise _not_found(parts[1])
        if len(parts) == 2:
            select = _select(opts, USER_PROPS)
            body = {
                "@odata.context": f"{base}/v1.0/$metadata#users/$entity",
                **self._render_user(tenant, user, select, _expand(opts)),
            }
            return _json_resp(200, body)
        if len(parts) == 3 and parts[2] == "manager":
            mid = tenant.managers.get(user["id"])
            if mid is None or mid not in tenant.users:
                raise _not_found("manager")
            select = _select(opts, USER_PROPS)
            body = {
                "@odata.context": f"{base}/v1.0/$metadata#directoryObjects/$entity",
                "@odata.type": USER_TYPE,
                **_project_user(tenant.users[mid], select),
            }
            return _json_resp(200, body)
        if len(parts) == 3 and parts[2] == "licenseDetails":
            skus = {s["skuId"]: s for s in tenant.skus}
            value = []
            for lic in user.get("assignedLicenses") or ():
                sku = skus.get(lic["skuId"], {})
                disabled = set(lic.get("disabledPlans") or ())
                plans = [
                    {**p, "provisioningStatus": "Disabled"}
                    if p.get("servicePlanId") in disabled
                    else p
                    for p in sku.get("servicePlans", [])
                ]
                value.append(
                    {
                        "id": f"{user['id']}_{lic['skuId']}",
                        "skuId": lic["skuId"],
                        "skuPartNumber": sku.get("skuPartNumber"),
                        "servicePlans": plans,
                    }
                )
            context = f"{base}/v1.0/$metadata#users('{user['id']}')/licenseDetails"
            return _json_resp(200, {"@odata.context": context, "value": value})
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[2]}'.")

    def _route_groups(
        self,
        parts: list[str],
        opts: dict[str, str],
        headers: Mapping[str, str],
        base: str,
        tenant: _Tenant,
    ) -> _Resp:
        if len(parts) == 1:
            select = _select(opts, GROUP_PROPS)
            return self._list(
                tenant.group_list(),
                opts,
                headers,
                base,
                "groups",
                lambda g: _project_plain(g, select),
                _context(base, "groups", select),
                False,
                tenant,
            )
        if parts[1] == "$count" and len(parts) == 2:
            return self._collection_count(tenant, "groups", headers)
        if parts[1] == "delta" and len(parts) == 2:
            return self._delta("groups", opts, headers, base, tenant)
        gid = parts[1]
        if gid not in tenant.groups:
            raise _not_found(gid)
        if len(parts) == 2:
            select = _select(opts, GROUP_PROPS)
            body = {
                "@odata.context": f"{base}/v1.0/$metadata#groups/$entity",
                **_project_plain(tenant.groups[gid], select),
            }
            return _json_resp(200, body)
        if len(parts) in (3, 4) and parts[2] in ("members", "transitiveMembers"):
            if self._members_hidden(tenant, gid):
                raise GraphError(
                    403,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                )
            ids = tenant.member_list(gid) if parts[2] == "members" else tenant.transitive(gid)
            if len(parts) == 4:
                if parts[3] != "$count":
                    raise GraphError(
                        400, "BadRequest", f"Resource not found for the segment '{parts[3]}'."
                    )
                return self._count(len(ids), headers)
            select = _select(opts, USER_PROPS | GROUP_PROPS | {"displayName"})
            return self._list(
                ids,
                opts,
                headers,
                base,
                f"groups/{gid}/{parts[2]}",
                lambda oid: self._render_member(tenant, oid, select),
                f"{base}/v1.0/$metadata#directoryObjects",
                False,
                tenant,
            )
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[2]}'.")

    def _render_user(
        self, tenant: _Tenant, user: dict, select: list[str] | None, expand: list[str] | None
    ) -> dict:
        out = _project_user(user, select)
        if expand is not None:
            mid = tenant.managers.get(user["id"])
            manager = tenant.users.get(mid) if mid else None
            if manager is not None:
                out["manager"] = {"@odata.type": USER_TYPE, **_project_user(manager, expand)}
        return out

    @staticmethod
    def _render_member(tenant: _Tenant, oid: str, select: list[str] | None) -> dict:
        user = tenant.users.get(oid)
        if user is not None:
            out = {"@odata.type": USER_TYPE, "id": oid}
            if select != _ID_ONLY:  # `$select=id` (what a members read asks) adds nothing
                out.update(_project_user(user, select))
            return out
        group = tenant.groups.get(oid)
        if group is not None:
            if select is None:
                return {"@odata.type": GROUP_TYPE, **group}
            return {
                "@odata.type": GROUP_TYPE,
                "id": oid,
                **{k: group.get(k) for k in select if k in GROUP_PROPS},
            }
        other = tenant.others.get(
            oid, {"id": oid, "@odata.type": "#microsoft.graph.directoryObject"}
        )
        if select is None:
            return dict(other)
        return {
            "@odata.type": other["@odata.type"],
            "id": oid,
            **{k: other[k] for k in select if k in other and k != "@odata.type"},
        }

    def _collection_count(self, tenant: _Tenant, kind: str, headers: Mapping[str, str]) -> _Resp:
        """`/users/$count`, `/groups/$count`: eventually consistent (GRAPH.md). Creations and
        deletions reach the count `count_lag` seconds late; `count_offset` skews it."""
        if not self.count_supported:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "Unsupported query: advanced query capabilities are not available for this tenant.",
            )
        n = len(tenant.users if kind == "users" else tenant.groups)
        if self.count_lag > 0:
            cutoff = time.monotonic() - self.count_lag
            n -= sum(step for when, k, step in tenant.count_events if k == kind and when > cutoff)
        return self._count(max(0, n + self.count_offset), headers)

    def _count(self, n: int, headers: Mapping[str, str]) -> _Resp:
        _require_eventual(headers)
        return _Resp(200, str(n).encode(), {}, "text/plain; charset=utf-8")

    def _list(
        self,
        items: list,
        opts: dict[str, str],
        headers: Mapping[str, str],
        base: str,
        path: str,
        render: Callable[[Any], dict],
        context: str,
        expanded: bool,
        tenant: _Tenant,
    ) -> _Resp:
        max_top = MAX_TOP_EXPAND if expanded else MAX_TOP
        top = DEFAULT_TOP
        if "$top" in opts:
            try:
                top = int(opts["$top"])
            except ValueError:
                raise _bad(f"Invalid page size specified: '{opts['$top']}'.") from None
            if not 1 <= top <= max_top:
                raise _bad(
                    f"Invalid page size specified: '{top}'. Must be between 1 and "
                    f"{max_top} inclusive."
                )
        want_count = opts.get("$count", "").lower() == "true"
        if want_count:
            _require_eventual(headers)
        if "$filter" in opts:
            raise GraphError(
                400, "Request_UnsupportedQuery", "$filter is not supported by the fake Graph."
            )
        offset = 0
        if "$skiptoken" in opts:
            offset = _decode_skiptoken(opts["$skiptoken"], path, tenant.tenant_id)
        end = offset + top
        if self.empty_page_rate and self._fault_rng.random() < self.empty_page_rate:
            end = offset  # an empty page that still links on: Graph does this
            self._stats["faults"]["empty_page"] += 1
        page = items[offset:end]
        body: dict[str, Any] = {"@odata.context": context}
        if want_count and offset == 0:
            body["@odata.count"] = len(items)
        if end < len(items):
            token = _b64url_json({"o": end, "p": path, "t": tenant.tenant_id})
            keep = [(k, v) for k, v in opts.items() if k != "$skiptoken"]
            body[_ODATA_NEXT] = _link(base, path, [*keep, ("$skiptoken", token)])
        body["value"] = [render(item) for item in page]
        return _json_resp(200, body)

    # -- delta
    def _delta(
        self,
        kind: str,
        opts: dict[str, str],
        headers: Mapping[str, str],
        base: str,
        tenant: _Tenant,
    ) -> _Resp:
        # the navigation properties a delta round may select: manager (users), members (groups)
        props = USER_PROPS | {"manager"} if kind == "users" else GROUP_PROPS | {"members"}
        if opts.get("$deltatoken", "").lower() == "latest":
            # "Sync from now": no objects, a deltaLink for the current state (Graph's
            # delta-query-overview: `$deltaToken=latest` on users and groups).
            for bad in _UNSUPPORTED_DELTA:
                if bad in opts:
                    raise _bad(f"The query option '{bad}' is not supported with delta queries.")
            session = _DeltaSession(
                kind,
                tenant.tenant_id,
                _select(opts, props),
                [],
                tenant.version,
                None,
                tenant.delta_epoch,
            )
            return self._delta_page(session, 0, 0, base, tenant, "")
        if "$skiptoken" in opts:
            state = self._decode_delta(opts["$skiptoken"], kind, tenant, base)
            session = self._delta_sessions.get(state.get("sid", ""))
            if session is None or session.tenant_id != tenant.tenant_id:
                raise GraphError(
                    400,
                    "syncStateNotFound",
                    "The sync state for this delta token could not be found; "
                    "start a new round of delta queries.",
                )
            if session.epoch != tenant.delta_epoch:
                self._expired_delta(kind, session.select, base, tenant)
            return self._delta_page(
                session,
                int(state.get("i", 0)),
                int(state.get("m", 0)),
                base,
                tenant,
                str(state["sid"]),
            )
        if "$deltatoken" in opts:
            state = self._decode_delta(opts["$deltatoken"], kind, tenant, base)
            age = time.time() - float(state.get("ts", 0))
            if state.get("e") != tenant.delta_epoch or age > self.delta_token_ttl:
                self._expired_delta(kind, state.get("s"), base, tenant)
            minimal = "return=minimal" in headers.get("prefer", "").replace(" ", "").lower()
            return self._start_delta(
                kind, state.get("s"), int(state["v"]), base, tenant, minimal=minimal
            )
        for bad in _UNSUPPORTED_DELTA:
            if bad in opts:
                raise _bad(f"The query option '{bad}' is not supported with delta queries.")
        select = _select(opts, props)
        return self._start_delta(kind, select, None, base, tenant)

    def _decode_delta(self, token: str, kind: str, tenant: _Tenant, base: str) -> dict:
        try:
            state = _unb64url_json(token)
            ok = (
                isinstance(state, dict)
                and state.get("k") == kind
                and state.get("t") == tenant.tenant_id
            )
        except (ValueError, binascii.Error):
            ok = False
        if not ok:
            raise GraphError(
                400,
                "syncStateNotFound",
                "The sync state for this delta token could not be found; start a "
                "new round of delta queries.",
            )
        return state

    def _expired_delta(
        self, kind: str, select: list[str] | None, base: str, tenant: _Tenant
    ) -> None:
        if tenant.expire_mode == "400":
            raise GraphError(
                400,
                "syncStateNotFound",
                "The sync state has expired; start a new round of delta queries.",
            )
        keep = [("$select", ",".join(select))] if select else []
        raise GraphError(
            410,
            "resyncRequired",
            "The delta token has expired or is no longer valid. Start a new round "
            "of delta queries from the Location URL.",
            {"Location": _link(base, f"{kind}/delta", keep)},
        )

    def _start_delta(
        self,
        kind: str,
        select: list[str] | None,
        since: int | None,
        base: str,
        tenant: _Tenant,
        *,
        minimal: bool = False,
    ) -> _Resp:
        if kind == "users":
            if since is None:
                items = [
                    *tenant.users,
                    *(uid for uid, why in tenant.deleted_users.items() if why == "changed"),
                ]
            else:
                items = [uid for uid, v in tenant.user_changes.items() if v > since]
                if select and "manager" in select:
                    listed = set(items)
                    items += [
                        uid
                        for uid, (v, _) in tenant.manager_changes.items()
                        if v > since and uid not in listed
                    ]
        elif since is None:
            items = [
                *tenant.groups,
                *(gid for gid, why in tenant.deleted_groups.items() if why == "changed"),
            ]
        else:
            changed = {gid for gid, v in tenant.group_changes.items() if v > since}
            for gid, touched in tenant.member_changes.items():
                if gid not in changed and any(v > since for v in touched.values()):
                    changed.add(gid)
            items = sorted(changed)
        session = _DeltaSession(
            kind,
            tenant.tenant_id,
            select,
            items,
            tenant.version,
            since,
            tenant.delta_epoch,
            minimal=minimal,
        )
        sid = _secrets.token_urlsafe(12)
        session.rng = random.Random(self._seed * 7919 + self._sessions_started)
        self._sessions_started += 1
        self._delta_sessions[sid] = session
        tenant.open_sessions[sid] = session
        while len(self._delta_sessions) > 512:
            old, evicted = self._delta_sessions.popitem(last=False)
            self._tenants[evicted.tenant_id].open_sessions.pop(old, None)
        return self._delta_page(session, 0, 0, base, tenant, sid)

    def _delta_page(
        self, session: _DeltaSession, idx: int, moff: int, base: str, tenant: _Tenant, sid: str
    ) -> _Resp:
        kind = session.kind
        out: list[dict] = []
        budget = self.delta_member_page_size
        items = session.items
        with_members = kind == "groups" and (session.select is None or "members" in session.select)
        if idx or moff:  # objects listed on earlier pages, listed again
            while session.repeats:
                again = self._delta_object(session, tenant, session.repeats.pop(0))
                if again is not None:
                    out.append(again)
        while idx < len(items) and len(out) < self.delta_page_size:
            oid = items[idx]
            entry = self._delta_object(session, tenant, oid)
            # hidden members (HIDDEN_MEMBERS): the entry comes without them, silently
            hidden = with_members and entry is not None and self._members_hidden(tenant, oid)
            if entry is None or "@removed" in entry or not with_members or hidden:
                if entry is not None:
                    out.append(entry)
                    self._maybe_repeat(session, oid, entry)
                idx += 1
                moff = 0
                continue
            mlist = session.member_lists.get(oid)
            if mlist is None:
                mlist = session.member_lists[oid] = self._member_delta(session, oid, tenant)
            if budget <= 0 and mlist[moff:]:
                break
            take = mlist[moff : moff + budget]
            if take:  # Graph leaves members@delta out when there is none (no members, no change)
                entry["members@delta"] = take
            out.append(entry)
            budget -= len(take)
            moff += len(take)
            if moff >= len(mlist):
                session.member_lists.pop(oid, None)
                self._maybe_repeat(session, oid, entry)
                idx += 1
                moff = 0
        body: dict[str, Any] = {"@odata.context": f"{base}/v1.0/$metadata#{kind}"}
        headers = {"Preference-Applied": "return=minimal"} if session.minimal else {}
        if idx < len(items) or (session.repeats and sid):
            token = _b64url_json(
                {"k": kind, "t": tenant.tenant_id, "sid": sid, "i": idx, "m": moff}
            )
            body[_ODATA_NEXT] = _link(base, f"{kind}/delta", [("$skiptoken", token)])
        else:
            token = _b64url_json(
                {
                    "k": kind,
                    "t": tenant.tenant_id,
                    "v": session.start_version,
                    "ts": round(time.time(), 3),
                    "e": session.epoch,
                    "s": session.select,
                }
            )
            body["@odata.deltaLink"] = _link(base, f"{kind}/delta", [("$deltatoken", token)])
            self._delta_sessions.pop(sid, None)
            tenant.open_sessions.pop(sid, None)
        body["value"] = out
        return _json_resp(200, body, headers)

    def _delta_object(self, session: _DeltaSession, tenant: _Tenant, oid: str) -> dict | None:
        """An object's delta entry as of now (a group's without members@delta), `@removed`
        if it is gone, None if it never existed for this round."""
        if session.kind == "users":
            user = tenant.users.get(oid)
            if user is None:
                reason = tenant.deleted_users.get(oid)
                return {"id": oid, "@removed": {"reason": reason}} if reason else None
            select = session.select
            props = [p for p in select if p != "manager"] if select else None
            item = _project_user(user, props)
            item.setdefault("id", oid)
            item = self._tracked(session, tenant, oid, item)
            if select and "manager" in select:
                refs = self._manager_delta(session, tenant, oid)
                if refs is not None:
                    item["manager@delta"] = refs
            return item
        group = tenant.groups.get(oid)
        if group is None:
            reason = tenant.deleted_groups.get(oid)
            return {"id": oid, "@removed": {"reason": reason}} if reason else None
        select = session.select
        entry = _project_plain(group, [p for p in select if p != "members"] if select else None)
        entry.setdefault("id", oid)
        return self._tracked(session, tenant, oid, entry)

    @staticmethod
    def _manager_delta(session: _DeltaSession, tenant: _Tenant, oid: str) -> list[dict] | None:
        """`manager@delta` of a users delta item that selects `manager`: the manager's
        reference (a first round, a new user, or unchanged without return=minimal); a
        removed one as a reference with `@removed`; None (left out) when nothing to say."""
        since = session.from_version
        mid = tenant.managers.get(oid)
        current = [{"@odata.type": USER_TYPE, "id": mid}] if mid in tenant.users else []
        if since is None or tenant.created.get(oid, 0) > since:
            return current or None
        version, before = tenant.manager_changes.get(oid, (0, None))
        if version > since:
            if current:
                return current
            gone = {"@odata.type": USER_TYPE, "id": before, "@removed": {"reason": "deleted"}}
            return [gone] if before else []
        return None if session.minimal else (current or None)

    def _maybe_repeat(self, session: _DeltaSession, oid: str, entry: dict) -> None:
        if (
            "@removed" not in entry
            and self.delta_repeat_rate
            and session.rng.random() < self.delta_repeat_rate
        ):
            session.repeats.append(oid)

    @staticmethod
    def _tracked(session: _DeltaSession, tenant: _Tenant, oid: str, item: dict) -> dict:
        """An object in a deltaLink round as Graph's user/group delta docs describe it: a new
        one whole; an updated one with every selected property except those never set (null
        and unchanged), or with `Prefer: return=minimal` only the properties changed since
        the link (nulls included), so a member-only change is just its id."""
        since = session.from_version
        if since is None or tenant.created.get(oid, 0) > since:
            return item
        changed = tenant.prop_changes.get(oid, {})
        return {
            k: v
            for k, v in item.items()
            if k == "id" or changed.get(k, 0) > since or (not session.minimal and v is not None)
        }

    @staticmethod
    def _member_delta(session: _DeltaSession, gid: str, tenant: _Tenant) -> list[dict]:
        current = tenant.members.get(gid, {})
        if session.from_version is None:
            return [
                {"@odata.type": tenant.odata_type(m) or "#microsoft.graph.directoryObject", "id": m}
                for m in current
            ]
        out = []
        for mid, v in tenant.member_changes.get(gid, {}).items():
            if v <= session.from_version:
                continue
            item: dict[str, Any] = {"@odata.type": tenant.odata_type(mid) or USER_TYPE, "id": mid}
            if mid not in current:
                item["@removed"] = {"reason": "deleted"}
            out.append(item)
        return out

    # -- batch
    def _batch(
        self, token: _Token, body: bytes, base: str, outer_headers: Mapping[str, str]
    ) -> _Resp:
        try:
            payload = json.loads(body)
            requests = payload["requests"]
            if not isinstance(requests, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise _bad("Invalid batch payload format.") from None
        if len(requests) > BATCH_MAX:
            raise _bad(
                f"The number of requests in the batch ({len(requests)}) exceeds the "
                f"limit of {BATCH_MAX}."
            )
        ids: set[str] = set()
        for item in requests:
            if not isinstance(item, dict) or not {"id", "method", "url"} <= set(item):
                raise _bad("Each batch request must have 'id', 'method' and 'url'.")
            rid = str(item["id"])
            if rid in ids:
                raise _bad(f"Request id '{rid}' is duplicated in the batch; ids must be unique.")
            ids.add(rid)
        by_id = {str(item["id"]): item for item in requests}
        results: dict[str, dict] = {}

        def run(rid: str, stack: tuple[str, ...] = ()) -> dict:
            if rid in results:
                return results[rid]
            item = by_id[rid]
            deps = item.get("dependsOn") or []
            failed = False
            for dep in deps:
                if dep not in by_id or dep in stack:
                    failed = True
                    continue
                if run(dep, (*stack, rid))["status"] >= 400:
                    failed = True
            if failed:
                results[rid] = {
                    "id": rid,
                    "status": 424,
                    "headers": {},
                    "body": {"error": {"code": "BadRequest", "message": "Failed dependency."}},
                }
                return results[rid]
            url = str(item["url"])
            split = urllib.parse.urlsplit(url)
            path = split.path if split.path.startswith("/") else f"/{split.path}"
            if path.startswith("/v1.0/"):
                path = path[len("/v1.0") :]
            inner_headers = {k.lower(): str(v) for k, v in (item.get("headers") or {}).items()}
            if "client-request-id" in outer_headers and "client-request-id" not in inner_headers:
                inner_headers["client-request-id"] = outer_headers["client-request-id"]
            inner_body = json.dumps(item["body"]).encode() if item.get("body") else b""
            request_id = str(uuid.uuid4())
            resp = self._graph(
                str(item["method"]).upper(),
                path,
                split.query,
                inner_headers,
                inner_body,
                base,
                request_id,
                token,
            )
            endpoint = f"{str(item['method']).upper()} /v1.0{_normalise(path)} (batch)"
            self._stats["requests"][endpoint] += 1
            self._stats["status"][resp.status] += 1
            resp.headers.setdefault("request-id", request_id)
            if resp.media_type.startswith("application/json"):
                # The inner body is already JSON: spliced in as is, not decoded and encoded again.
                content: Any = orjson.Fragment(resp.body) if resp.body else None
            else:
                content = resp.body.decode()
            headers = {"Content-Type": resp.media_type, **resp.headers}
            results[rid] = {"id": rid, "status": resp.status, "headers": headers, "body": content}
            return results[rid]

        for rid in by_id:
            run(rid)
        out = list(results.values())
        self._batch_rng.shuffle(out)
        # A batch with throttled items answers 424 overall, every item still inside
        # (throttling.md).
        status = 424 if any(r["status"] == 429 for r in out) else 200
        return _json_resp(status, {"responses": out})


# ----------------------------------------------------------------------------------------
# helpers


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


def _json_resp(status: int, body: Any, headers: dict[str, str] | None = None) -> _Resp:
    # orjson: the fake shares the machine with the client it serves, and encoding pages was
    # most of its CPU. Compact UTF-8 JSON, as Graph sends it; int keys become strings, as
    # with json.dumps.
    return _Resp(status, orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), headers or {})


def _parse_query(query: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        k = key if key.startswith("$") or key.lower() not in _KNOWN_OPTIONS else f"${key}"
        opts[k.lower() if k.startswith("$") else k] = value
    return opts


def _link(base: str, path: str, opts: list[tuple[str, str]]) -> str:
    query = "&".join(f"{k}={urllib.parse.quote(v, safe=',$()')}" for k, v in opts)
    return f"{base}/v1.0/{path}" + (f"?{query}" if query else "")


def _decode_skiptoken(token: str, path: str, tenant_id: str) -> int:
    try:
        state = _unb64url_json(token)
        if state.get("p") == path and state.get("t") == tenant_id:
            return max(0, int(state["o"]))
    except (ValueError, binascii.Error, KeyError, TypeError, AttributeError):
        pass
    raise _bad("Invalid $skiptoken.")


def _select(opts: Mapping[str, str], allowed: frozenset[str] | set[str] | None) -> list[str] | None:
    raw = opts.get("$select")
    if raw is None:
        return None
    props = [p.strip() for p in raw.split(",") if p.strip()]
    if allowed is not None:
        for prop in props:
            if prop not in allowed:
                raise _bad(
                    f"Could not find a property named '{prop}' on type "
                    "'microsoft.graph.directoryObject'."
                )
    return props


def _expand(opts: Mapping[str, str]) -> list[str] | None:
    """`$expand=manager(...)` → the manager's selected properties (default: all)."""
    raw = opts.get("$expand")
    if raw is None:
        return None
    raw = raw.strip()
    name, _, rest = raw.partition("(")
    if name.strip() != "manager" or "," in raw.split("(")[0]:
        raise _bad(
            f"Expansion of '{name.strip()}' is not supported; only 'manager' can be expanded, once."
        )
    select: list[str] | None = None
    if rest:
        for part in rest.rstrip(")").split(";"):
            key, _, value = part.partition("=")
            key = key.strip().lstrip("$").lower()
            if key == "select":
                select = [p.strip() for p in value.split(",") if p.strip()]
            elif key == "levels":
                if value.strip() not in ("1", "max"):
                    raise _bad(f"Invalid $levels value '{value}'.")
            else:
                raise _bad(f"Query option '${key}' is not allowed inside $expand.")
    return select if select is not None else list(USER_DEFAULT)


def _context(base: str, entity: str, select: list[str] | None) -> str:
    suffix = f"({','.join(select)})" if select else ""
    return f"{base}/v1.0/$metadata#{entity}{suffix}"


def _project_user(user: Mapping[str, Any], select: list[str] | None) -> dict:
    keys = USER_DEFAULT if select is None else select
    out = {}
    for k in keys:
        value = user.get(k)
        if value is None and k in _USER_EMPTY_LISTS:
            value = []
        out[k] = value
    return out


def _project_plain(obj: Mapping[str, Any], select: list[str] | None) -> dict:
    if select is None:
        return dict(obj)
    return {k: obj.get(k) for k in select}


# Base resource-unit costs, as Microsoft's `concepts/throttling-limits.md` ("Identity and
# access service limits") lists them; `*` is one id segment. Costs given for `me/...` apply to
# `users/{id}/...` as well (the page's note). Everything else costs 1: `users/{id}`,
# `users/delta` and `users/$count` included (only the `GET users` list costs 2).
_BASE_COSTS: dict[tuple[str, tuple[str, ...]], int] = {
    ("GET", ("applications",)): 2,
    ("GET", ("applications", "*", "extensionProperties")): 2,
    ("GET", ("contracts",)): 3,
    ("POST", ("directoryObjects", "getByIds")): 3,
    ("GET", ("domains", "*", "domainNameReferences")): 4,
    ("POST", ("getObjectsById",)): 3,
    ("GET", ("groups", "*", "members")): 3,
    ("GET", ("groups", "*", "transitiveMembers")): 5,
    ("POST", ("isMemberOf",)): 4,
    ("POST", ("users", "*", "checkMemberGroups")): 4,
    ("POST", ("users", "*", "checkMemberObjects")): 4,
    ("POST", ("users", "*", "getMemberGroups")): 2,
    ("POST", ("users", "*", "getMemberObjects")): 2,
    ("GET", ("users", "*", "licenseDetails")): 2,
    ("GET", ("users", "*", "memberOf")): 2,
    ("GET", ("users", "*", "ownedObjects")): 2,
    ("GET", ("users", "*", "transitiveMemberOf")): 2,
    ("GET", ("oauth2PermissionGrants",)): 2,
    ("GET", ("oauth2PermissionGrants", "*")): 2,
    ("GET", ("servicePrincipals", "*", "appRoleAssignments")): 2,
    ("GET", ("subscribedSkus",)): 3,
    ("GET", ("users",)): 2,
}


def _cost(method: str, path: str, opts: Mapping[str, str]) -> int:
    """What Graph charges: the base cost, `$select` -1, `$expand` +1, `$top` below 20 -1,
    never below 1 (throttling-limits.md, "Other factors that affect a request cost")."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["me"]:
        parts = ["users", "*", *parts[1:]]
    shape = tuple("*" if i == 1 and len(parts) > 1 else p for i, p in enumerate(parts))
    cost = _BASE_COSTS.get((method, tuple(parts)), _BASE_COSTS.get((method, shape), 1))
    if "$select" in opts:
        cost -= 1
    if "$expand" in opts:
        cost += 1
    try:
        if int(opts.get("$top", "")) < 20:
            cost -= 1
    except ValueError:
        pass
    return max(1, cost)


def _normalise(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    keep = {
        "users",
        "groups",
        "members",
        "transitiveMembers",
        "manager",
        "subscribedSkus",
        "delta",
        "$count",
        "$batch",
        "organization",
        "licenseDetails",
    }
    return "/" + "/".join(p if p in keep else "{id}" for p in parts)


def _normalise_login(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return "/{tenant}/" + "/".join(parts[1:]) if parts else "/"


def serve_forever(
    tenant: dict,
    *,
    port: int,
    secret: str,
    state_dir: Path,
    host: str = "127.0.0.1",
    on_ready: Callable[[FakeGraph], None] | None = None,
    **options: Any,
) -> None:
    """Serve one tenant until interrupted (the `sync-pipeline fakegraph serve` command).

    `on_ready` is called with the started server (base_url, ca_path) so the CLI can print how
    to connect; `options` are passed on to FakeGraph (throttle=True, latency=..., ...).
    """
    fake = FakeGraph(
        [tenant],
        secrets={tenant["tenant_id"]: secret},
        host=host,
        port=port,
        state_dir=state_dir,
        **options,
    )
    fake.start()
    log.info(
        "fake Graph for %s at %s (tenant_id %s, client_id %s, CA %s)",
        tenant.get("name"),
        fake.base_url,
        tenant["tenant_id"],
        tenant["client_id"],
        fake.ca_path,
    )
    if on_ready is not None:
        on_ready(fake)
    stop = threading.Event()
    try:
        while not stop.wait(0.5):
            if fake._thread is None or not fake._thread.is_alive():
                break
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
