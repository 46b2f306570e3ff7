"""Directory reads: users (one, by id or UPN, with `$expand=manager`, their manager and
licence details), groups, members and transitive members, `$count`, subscribed SKUs and the
organization, with Graph's paging, `$top` limits and errors.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sync_pipeline.fakegraph.delta import _Delta
from sync_pipeline.fakegraph.generator import GROUP_TYPE, USER_TYPE
from sync_pipeline.fakegraph.mutations import _Tenant
from sync_pipeline.fakegraph.odata import (
    _ID_ONLY,
    _ODATA_NEXT,
    DEFAULT_TOP,
    GROUP_PROPS,
    MAX_TOP,
    MAX_TOP_EXPAND,
    USER_PROPS,
    _context,
    _decode_skiptoken,
    _expand,
    _project_plain,
    _project_user,
    _select,
)
from sync_pipeline.fakegraph.subscriptions import _Subscriptions
from sync_pipeline.fakegraph.wire import (
    GraphError,
    _b64url_json,
    _bad,
    _json_resp,
    _link,
    _not_found,
    _require_eventual,
    _Resp,
)


class _Directory(_Delta, _Subscriptions):
    """`GET /users...`, `/groups...`, `/subscribedSkus`, `/organization`."""

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
        if parts and parts[0] == "subscriptions":
            return self._route_subscriptions(method, parts, body, base, tenant.tenant_id)
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
        app = _APP_BY_ID.fullmatch(head)
        if app and len(parts) == 1:
            return self._application(app.group(1), opts, base, tenant)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{head}'.")

    def _application(self, app_id: str, opts: dict[str, str], base: str, tenant: _Tenant) -> _Resp:
        """`GET /applications(appId='{appId}')` (application-get.md): the tenant's app
        registration with its client secret (passwordCredentials: `hint` is the secret's
        first three characters, `secretText` is never returned) and its expiry."""
        if app_id != tenant.client_id:
            raise _not_found(app_id)
        secret = self._secrets.get(tenant.tenant_id)
        ends = self._secret_expiry.get(tenant.tenant_id, self._started_at + 730 * 86400)
        passwords = (
            [
                {
                    "customKeyIdentifier": None,
                    "displayName": "sync-pipeline",
                    "endDateTime": _iso(ends),
                    "hint": secret[:3],
                    "keyId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant.tenant_id}/secret")),
                    "secretText": None,
                    "startDateTime": _iso(self._started_at),
                }
            ]
            if secret
            else []
        )
        doc = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant.tenant_id}/app")),
            "appId": app_id,
            "displayName": f"{tenant.name} directory sync",
            "passwordCredentials": passwords,
            "keyCredentials": [],
        }
        select = _select(opts, None)
        return _json_resp(
            200,
            {"@odata.context": f"{base}/v1.0/$metadata#applications/$entity"}
            | _project_plain(doc, select),
        )

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
        if len(parts) in (3, 4) and parts[2] == "mailboxSettings":
            return self._mailbox_settings(parts, opts, base, tenant, user)
        if len(parts) == 3 and parts[2] == "memberOf":
            # user-list-memberof.md: the groups (directory roles, administrative units) the
            # user is a direct member of, pages of 100 by default, 999 at most. A group whose
            # members the app may not list (hidden membership without Member.Read.Hidden) is
            # left out without an error, as Graph is known to do (permissions.py).
            uid = user["id"]
            ids = [g for g in tenant.member_of(uid) if not self._members_hidden(tenant, g)]
            select = _select(opts, GROUP_PROPS | {"displayName"})
            return self._list(
                ids,
                opts,
                headers,
                base,
                f"users/{uid}/memberOf",
                lambda oid: self._render_member(tenant, oid, select),
                f"{base}/v1.0/$metadata#directoryObjects",
                False,
                tenant,
            )
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

    def _mailbox_settings(
        self,
        parts: list[str],
        opts: dict[str, str],
        base: str,
        tenant: _Tenant,
        user: dict[str, Any],
    ) -> _Resp:
        """`GET /users/{id}/mailboxSettings[/userPurpose]` (user-get-mailboxsettings.md): the
        whole settings, or one of them, `userPurpose` as `{"value": "shared"}`. A user without
        an Exchange Online mailbox (a guest, an account without a mailbox) is answered 404
        `MailboxNotEnabledForRESTAPI`, as Graph is widely reported to answer (the reference
        documents no error responses); the permission is MailboxSettings.Read (permissions.py)."""
        purpose = tenant.mailbox_purpose(user)
        if purpose is None:
            raise GraphError(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        context = f"{base}/v1.0/$metadata#users('{user['id']}')/mailboxSettings"
        if len(parts) == 4:
            if parts[3] != "userPurpose":
                raise GraphError(
                    400, "BadRequest", f"Resource not found for the segment '{parts[3]}'."
                )
            return _json_resp(200, {"@odata.context": f"{context}/userPurpose", "value": purpose})
        settings = {
            "archiveFolder": None,
            "timeZone": "UTC",
            "language": {"locale": "en-US", "displayName": "English (United States)"},
            "dateFormat": "MM/dd/yyyy",
            "timeFormat": "hh:mm tt",
            "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
            "userPurpose": {"value": purpose},
        }
        select = _select(opts, None)
        return _json_resp(200, {"@odata.context": context} | _project_plain(settings, select))

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
        """`/users/$count`, `/groups/$count`: eventually consistent (docs/graph.md). Creations and
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


_APP_BY_ID = re.compile(r"applications\(appId='([^']+)'\)")


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
