"""The Graph client: one msal app per tenant, requests with urllib3 retries, paging to the end.

GraphClient is the facade the extraction uses: tokens, one request charged to the budget,
errors that say what to do, `$count`, pages to the end and `$batch`. The session with its
retries is in transport.py, the credential and the msal app in credentials.py; their names
are re-exported here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.graph.budget import Budget, cost
from sync_pipeline.graph.credentials import KNOWN_AUTHORITIES, msal_app, resolve_credential
from sync_pipeline.graph.errors import GraphAuthError, GraphError, auth_hint, permission_hint
from sync_pipeline.graph.transport import (
    RETRY_STATUSES,
    GraphStats,
    error_body,
    json_body,
    new_session,
)

__all__ = [
    "API_VERSION",
    "KNOWN_AUTHORITIES",
    "RETRY_STATUSES",
    "GraphClient",
    "GraphStats",
    "resolve_credential",
]

API_VERSION = "v1.0"


class GraphClient:
    """Reads one tenant's directory. Thread-safe: extraction fans requests out over threads.

    Every call first spends its resource units from the tenant's and the app's budget
    (budget.py), so concurrent reads stay under Graph's limits instead of collecting 429s.
    """

    def __init__(
        self,
        settings: TenantSettings,
        *,
        credential: str | dict[str, str] | None = None,
        stats: GraphStats | None = None,
        pool_size: int = 16,
        budget: Budget | None = None,
        shared_tokens: bool = True,
        connect_retries: int = 5,
    ) -> None:
        self.settings = settings
        self.tenant = settings.slug
        self.stats = stats or GraphStats()
        self.base = f"{settings.graph_base_url}/{API_VERSION}"
        self.scope = [f"{settings.graph_base_url}/.default"]
        self.http = new_session(settings, self.stats, pool_size, connect_retries)
        self.budget = budget or Budget(settings.client_id)
        self.delegated = None
        if settings.auth_mode == "delegated" and credential is None:
            from sync_pipeline.graph.auth import DelegatedTokens

            self.delegated = DelegatedTokens(settings, self.http)
            self._app = None
        else:
            self._app = msal_app(
                settings,
                credential or resolve_credential(settings),
                self.http,
                shared=shared_tokens,
            )

    # -- tokens ---------------------------------------------------------------------------
    def token(self) -> str:
        if self.delegated is not None:
            return self.delegated.token()
        assert self._app is not None
        result = self._app.acquire_token_for_client(scopes=self.scope)
        if "access_token" not in result:
            error = str(result.get("error", "unknown_error"))
            description = str(result.get("error_description", ""))
            raise GraphAuthError(
                tenant=self.tenant,
                error=error,
                description=description,
                hint=auth_hint(error, description),
            )
        return str(result["access_token"])

    # -- requests ---------------------------------------------------------------------------
    def _url(self, path_or_url: str) -> str:
        """Relative paths join the base; Graph's absolute links (nextLink, deltaLink) are
        pinned to graph_base_url's host, so the bearer token never goes anywhere else (and a
        stored deltaLink follows the tenant when its endpoint moves)."""
        if not path_or_url.startswith("https://"):
            return f"{self.base}{path_or_url}"
        split, base = urlsplit(path_or_url), urlsplit(self.base)
        if split.netloc == base.netloc:
            return path_or_url
        return urlunsplit((base.scheme, base.netloc, split.path, split.query, ""))

    def _spend(self, units: int, requests: int = 1) -> None:
        waited = self.budget.spend(units, requests)
        if waited:
            self.stats.add(budget_wait_seconds=waited)

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
        units: int | None = None,
        requests_made: int = 1,
    ) -> requests.Response:
        """One call; `units` and `requests_made` (a `$batch`: its items and itself) override
        what the budget is charged."""
        url = self._url(path_or_url)
        path = urlsplit(url).path
        self._spend(cost(method, url, params) if units is None else units, requests_made)
        send = {"Authorization": f"Bearer {self.token()}", **(headers or {})}
        try:
            response = self.http.request(
                method, url, params=params, headers=send, json=json, timeout=(10, 120)
            )
        except requests.RequestException as exc:
            raise GraphError(
                tenant=self.tenant,
                status=None,
                code=type(exc).__name__,
                message="the connection failed after retries",
                path=path,
                hint="Check graph_base_url and the network; the run can be retried",
            ) from None
        used = response.headers.get("x-ms-resource-unit")
        self.stats.add(requests=1, resource_units=int(used) if used and used.isdigit() else 0)
        if response.status_code not in ok:
            raise self._error(response.status_code, error_body(response), response.headers, path)
        return response

    def _error(
        self, status: int, body: Any, headers: Any, path: str, reason: str = ""
    ) -> GraphError:
        code, message, request_id = "UnknownError", reason, None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = error.get("code", code)
            message = error.get("message", message)
            request_id = (error.get("innerError") or {}).get("request-id")
        request_id = request_id or (headers or {}).get("request-id")
        hint = None
        if status == 403 or code == "Authorization_RequestDenied":
            kind = "delegated" if self.delegated is not None else "application"
            hint = permission_hint(path, kind)
        elif status == 401:
            hint = "The token was refused: check tenant_id, client_id and graph_base_url"
        elif status == 429:
            hint = "Graph kept throttling after every retry; the next run will continue"
        return GraphError(
            tenant=self.tenant,
            status=status,
            code=code,
            message=message,
            path=path,
            request_id=request_id,
            hint=hint,
        )

    def get(self, path_or_url: str, **kw: Any) -> dict[str, Any]:
        return json_body(self.request("GET", path_or_url, **kw))

    def get_json(self, method: str, path_or_url: str, **kw: Any) -> dict[str, Any]:
        """Any method's JSON answer (POST, PATCH: subscriptions)."""
        return json_body(self.request(method, path_or_url, **kw))

    def count(self, path: str) -> int | None:
        """`$count` of a collection (advanced query: ConsistencyLevel eventual), or None where
        the tenant does not support it: Azure AD B2C has no advanced queries and answers 400.

        The count is eventually consistent (docs/graph.md): the caller compares it with a
        tolerance, never exactly."""
        try:
            response = self.request(
                "GET", f"{path}/$count", headers={"ConsistencyLevel": "eventual"}
            )
        except GraphError as exc:
            if exc.status == 400:
                return None
            raise
        try:
            return int(response.text.strip())
        except ValueError:
            raise GraphError(
                tenant=self.tenant,
                status=200,
                code="MalformedCount",
                message=f"$count answered {response.text[:40]!r}",
                path=path,
            ) from None

    def pages(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following @odata.nextLink to the end.

        The nextLink carries all query options, so params go on the first call only; headers
        (ConsistencyLevel) are sent on every page, as Graph requires. A link seen twice
        would loop forever and a page without a `value` list is a truncated read: both fail.
        """
        body = self.get(path, params=params, headers=headers)
        seen: set[str] = set()
        while True:
            if not isinstance(body.get("value"), list):
                raise self._malformed(path, "a page had no 'value' list")
            yield body
            next_link = body.get("@odata.nextLink")
            if not next_link:
                return
            if next_link in seen:
                raise self._malformed(path, "Graph sent the same nextLink twice")
            seen.add(next_link)
            body = self.get(next_link, headers=headers)

    def _malformed(self, path: str, message: str) -> GraphError:
        return GraphError(
            tenant=self.tenant,
            status=200,
            code="MalformedPage",
            message=message,
            path=path,
            hint="The read is incomplete; nothing was loaded",
        )

    def collection(self, path: str, **kw: Any) -> Iterator[list[dict[str, Any]]]:
        for page in self.pages(path, **kw):
            yield page["value"]

    def batch(self, urls: dict[str, str], *, attempts: int = 8) -> dict[str, tuple[int, Any]]:
        """GET up to 20 relative URLs in one `$batch`; returns {id: (status, body)}.

        Graph answers a batch holding throttled items with 424 (Failed Dependency) overall,
        still carrying every item (throttling.md): read it as a 200. Inner 429 and 5xx are
        retried (only those items), like the same status on a plain request, after the
        longest Retry-After they carry, or a capped exponential backoff with jitter.
        """
        pending = dict(urls)
        out: dict[str, tuple[int, Any]] = {}
        for attempt in range(attempts):
            units = sum(cost("GET", u) for u in pending.values())
            payload = {
                "requests": [{"id": k, "method": "GET", "url": u} for k, u in pending.items()]
            }
            response = self.request(
                "POST",
                "/$batch",
                json=payload,
                units=units,
                requests_made=len(pending) + 1,
                headers={},
                ok=(200, 424),
            )
            body = json_body(response)
            self.stats.add(batches=1)
            wait = 0.0
            for item in body.get("responses", []):
                rid, status = str(item.get("id")), int(item.get("status", 0))
                if rid not in pending:
                    continue
                inner = item.get("body")
                headers = {str(k).lower(): v for k, v in (item.get("headers") or {}).items()}
                self.stats.add(resource_units=int(headers.get("x-ms-resource-unit", 0) or 0))
                if status in RETRY_STATUSES and attempt < attempts - 1:
                    retry_after = headers.get("retry-after")
                    try:
                        wait = max(wait, float(retry_after)) if retry_after else wait
                    except ValueError:
                        pass
                    if not retry_after:
                        wait = max(wait, min(30.0, 0.5 * 2**attempt) * (0.5 + random.random()))
                    self.stats.add(throttled=1 if status == 429 else 0)
                    continue
                out[rid] = (status, inner)
                del pending[rid]
            if not pending:
                return out
            self.stats.add(retries=1, wait_seconds=wait)
            time.sleep(wait)
        for rid, url in pending.items():  # unreachable unless Graph dropped items silently
            raise self._malformed(url, f"$batch never answered item {rid}")
        return out

    def batch_error(self, url: str, status: int, body: Any) -> GraphError:
        return self._error(status, body, {}, urlsplit(self._url(url)).path)

    def close(self) -> None:
        self.http.close()
