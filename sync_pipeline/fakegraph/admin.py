"""The control API tests and operators use: tenant documents and the admin ops that change
them, expired delta links and access tokens, revoked refresh tokens, device-code approval,
client certificates and request statistics; as Python methods and under `/_admin/` (HTTP).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sync_pipeline.fakegraph.subscriptions import _Subscriptions
from sync_pipeline.fakegraph.wire import _json_resp, _Resp


class _Admin(_Subscriptions):
    """The admin operations (each under the request lock)."""

    @property
    def stats(self) -> dict:
        with self._lock:
            s = self._stats
            return {
                "requests": dict(s["requests"]),
                "status": {str(k): v for k, v in s["status"].items()},
                "resource_units": s["resource_units"],
                "resource_units_by_tenant": dict(s["resource_units_by_tenant"]),
                "graph_calls_by_tenant": dict(s["graph_calls_by_tenant"]),
                "throttled_by_tenant": dict(s["throttled_by_tenant"]),
                "throttled": s["throttled"],
                "throttled_requests_per_second": s["throttled_requests_per_second"],
                "throttled_outlook_concurrency": s["throttled_outlook_concurrency"],
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

    def mutate(self, tenant_id: str, ops: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Apply admin ops in order; returns each op's result (the affected id)."""
        with self._lock:
            tenant = self._tenant(tenant_id)
            results = [tenant.apply(op, self._id_rng) for op in ops]
            self._notify_ops(tenant_id, ops, results)
            return results

    def add_user(self, tenant_id: str, user: Mapping[str, Any]) -> str:
        return self.mutate(tenant_id, [{"op": "add_user", "user": dict(user)}])[0]

    def update_user(self, tenant_id: str, user_id: str, **changes: Any) -> str:
        return self.mutate(tenant_id, [{"op": "update_user", "id": user_id, "changes": changes}])[0]

    def delete_user(self, tenant_id: str, user_id: str, *, reason: str = "deleted") -> str:
        return self.mutate(tenant_id, [{"op": "delete_user", "id": user_id, "reason": reason}])[0]

    def restore_user(self, tenant_id: str, user_id: str) -> str:
        """Restore a soft-deleted user (delete_user(..., reason="changed")) with its links."""
        return self.mutate(tenant_id, [{"op": "restore_user", "id": user_id}])[0]

    def set_mailbox_purpose(self, tenant_id: str, user_id: str, purpose: str | None) -> str:
        """Convert a user's mailbox (userPurpose shared, room, ...), or take it away (None:
        Graph then answers 404 MailboxNotEnabledForRESTAPI)."""
        ops = [{"op": "set_mailbox_purpose", "id": user_id, "purpose": purpose}]
        return self.mutate(tenant_id, ops)[0]

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

    def set_secret_expiry(self, tenant_id: str, expires_at: float | None) -> None:
        """The tenant's client secret expires at this Unix time (None: the default, two
        years after the fake started); from then on its token requests fail AADSTS7000222."""
        with self._lock:
            self._tenant(tenant_id)
            if expires_at is None:
                self._secret_expiry.pop(tenant_id, None)
            else:
                self._secret_expiry[tenant_id] = float(expires_at)

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
            answer = self._admin_subscriptions(method, parts, payload)
            if answer is not None:
                return answer
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
                if method == "POST" and action == "secret":
                    # {"expires_at": Unix seconds, or null for the default}
                    self.set_secret_expiry(tid, payload.get("expires_at"))
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
