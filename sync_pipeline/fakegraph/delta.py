"""Delta queries on users and groups: rounds and their next/delta links, `$deltatoken=latest`,
expired links (410 or 400), updated objects as Graph sends them (whole, or with
`Prefer: return=minimal` only what changed), `members@delta`, `manager@delta`, soft-deleted
objects `@removed`, and objects listed again later in a round (`delta_repeat_rate`).
"""

from __future__ import annotations

import binascii
import random
import secrets as _secrets
import time
from collections.abc import Mapping
from typing import Any

from sync_pipeline.fakegraph.generator import USER_TYPE
from sync_pipeline.fakegraph.mutations import _Tenant
from sync_pipeline.fakegraph.odata import (
    _ODATA_NEXT,
    GROUP_PROPS,
    USER_PROPS,
    _project_plain,
    _project_user,
    _select,
)
from sync_pipeline.fakegraph.permissions import _Permissions
from sync_pipeline.fakegraph.tenant import _DeltaSession
from sync_pipeline.fakegraph.wire import (
    GraphError,
    _b64url_json,
    _bad,
    _json_resp,
    _link,
    _Resp,
    _unb64url_json,
)

_UNSUPPORTED_DELTA = ("$top", "$orderby", "$expand", "$filter", "$search", "$count")


class _Delta(_Permissions):
    """`/users/delta`, `/groups/delta` and the sessions of open rounds."""

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
            latest = _DeltaSession(
                kind,
                tenant.tenant_id,
                _select(opts, props),
                [],
                tenant.version,
                None,
                tenant.delta_epoch,
            )
            return self._delta_page(latest, 0, 0, base, tenant, "")
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
