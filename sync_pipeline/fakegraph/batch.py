"""JSON batching (`POST /v1.0/$batch`): at most 20 requests with unique ids, `dependsOn`
(424 per item when a dependency fails), items answered in any order, and a batch with a
throttled item answering 424 overall."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from sync_pipeline.fakegraph.base import _Token
from sync_pipeline.fakegraph.graphcall import _GraphCall
from sync_pipeline.fakegraph.wire import _bad, _json_resp, _normalise, _Resp

BATCH_MAX = 20


class _Batch(_GraphCall):
    """`$batch`: each item is a Graph call of its own (`_graph`)."""

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
