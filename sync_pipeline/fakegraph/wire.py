"""The fake's wire shapes: a prepared response, Graph's and the token endpoint's errors,
JSON encoding, query-string parsing, links, base64url state and endpoint names for stats.

Everything here is a pure function or a plain value: no server state.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

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
# what `handle` returns for a connection the fake drops (a fault, drop_rate)
_DROP = object()


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
        "mailboxSettings",
        "userPurpose",
    }
    return "/" + "/".join(p if p in keep else "{id}" for p in parts)


def _normalise_login(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return "/{tenant}/" + "/".join(parts[1:]) if parts else "/"
