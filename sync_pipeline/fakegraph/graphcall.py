"""One Graph call, from the bearer token to the answer: permissions, injected faults,
resource units and throttling, then the directory; errors in Graph's shape."""

from __future__ import annotations

from collections.abc import Mapping

from sync_pipeline.fakegraph.base import _Token
from sync_pipeline.fakegraph.costs import cost
from sync_pipeline.fakegraph.directory import _Directory
from sync_pipeline.fakegraph.outlook import _Outlook
from sync_pipeline.fakegraph.throttle import _Throttling
from sync_pipeline.fakegraph.tokens import _Tokens
from sync_pipeline.fakegraph.wire import GraphError, _json_resp, _now_iso, _parse_query, _Resp


class _GraphCall(_Tokens, _Throttling, _Outlook, _Directory):
    """A single `/v1.0/...` request (plain, or one item of a `$batch`)."""

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
            self._stats["graph_calls_by_tenant"][tenant.tenant_id] += 1  # $batch items singly
            self._graph_requests += 1
            self._inject_fault()
            self._outlook_admit(path)
            opts = _parse_query(query)
            units = cost(method, path, opts)
            extra = self._charge(token, tenant, units)
            resp = self._route(method, path, opts, headers, body, base, tenant)
            resp.headers.update(extra)
        except GraphError as exc:
            resp = self._graph_error(exc, request_id, crid)
            if exc.status == 429:
                units = 0
                if token is not None:
                    self._stats["throttled_by_tenant"][token.tenant_id] += 1
        resp.headers["x-ms-resource-unit"] = str(units)
        resp.units = units
        return resp
