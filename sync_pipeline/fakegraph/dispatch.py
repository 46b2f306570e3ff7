"""Where each request goes: `/_admin/`, `/v1.0/` (a scripted answer, `$batch` or one Graph
call) or the login endpoints; request ids and statistics."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sync_pipeline.fakegraph.admin import _Admin
from sync_pipeline.fakegraph.batch import _Batch
from sync_pipeline.fakegraph.login import _Login
from sync_pipeline.fakegraph.wire import (
    _DROP,
    GraphError,
    _json_resp,
    _normalise,
    _normalise_login,
    _parse_query,
    _Resp,
)


class _Dispatch(_Batch, _Login, _Admin):
    """Every concern assembled; `handle` answers one HTTP request."""

    def handle(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        base: str,
        outlook: int | None = None,
    ) -> _Resp | object:
        """Answer one HTTP request (synchronous; the ASGI endpoint and $batch call this).
        `outlook`: its arrival number when it holds Outlook slots (outlook.py)."""
        request_id = str(uuid.uuid4())
        resp: _Resp | object
        with self._lock:
            self._outlook_current = outlook
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
        if self._dropped():
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
