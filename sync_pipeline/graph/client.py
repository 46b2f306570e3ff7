"""The Graph client: one msal app per tenant, requests with urllib3 retries, paging to the end.

Retries (429/503/504 and dropped connections) are urllib3's `Retry`, honouring `Retry-After`;
the subclass below only adds what urllib3 lacks: fractional `Retry-After` ("2.128", as Graph
sends) and counting the retries and the seconds spent waiting, for the run's metadata.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msal
import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sync_pipeline.core import config
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.graph.budget import Budget, cost
from sync_pipeline.graph.errors import (
    CredentialError,
    GraphAuthError,
    GraphError,
    auth_hint,
    permission_hint,
)

API_VERSION = "v1.0"
# Retried on a plain request (urllib3) and on a `$batch` item alike.
RETRY_STATUSES = (429, 500, 502, 503, 504)
KNOWN_AUTHORITIES = {
    "https://login.microsoftonline.com",
    "https://login.microsoftonline.us",
    "https://login.chinacloudapi.cn",
}


@dataclass
class GraphStats:
    """Counters for one extraction; shared by the client's threads."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    wait_seconds: float = 0.0
    budget_wait_seconds: float = 0.0
    resource_units: int = 0
    batches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, value in deltas.items():
                setattr(self, name, getattr(self, name) + value)

    def as_metadata(self) -> dict[str, float]:
        return {
            "graph_requests": self.requests,
            "graph_retries": self.retries,
            "graph_throttled": self.throttled,
            "graph_wait_seconds": round(self.wait_seconds, 3),
            "graph_resource_units": self.resource_units,
            "graph_batches": self.batches,
            "graph_budget_wait_seconds": round(self.budget_wait_seconds, 3),
        }


class _GraphRetry(Retry):
    stats: GraphStats | None = None

    def new(self, **kw: Any) -> _GraphRetry:
        retry = super().new(**kw)
        retry.stats = self.stats
        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = float(retry_after)
        except ValueError:
            return super().parse_retry_after(retry_after)
        return min(max(seconds, 0.0), float(self.retry_after_max))

    def sleep(self, response: Any = None) -> None:
        started = time.monotonic()
        super().sleep(response)
        if self.stats is not None:
            throttled = 1 if response is not None and response.status == 429 else 0
            self.stats.add(retries=1, throttled=throttled, wait_seconds=time.monotonic() - started)


def _retry_policy(stats: GraphStats) -> Retry:
    retry = _GraphRetry(
        total=10,
        connect=5,
        read=5,
        status=8,
        other=0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # every call we make is a read, $batch POST included
        backoff_factor=0.5,
        backoff_max=60,
        backoff_jitter=0.5,
        respect_retry_after_header=True,
        raise_on_status=False,
        retry_after_max=180,
    )
    retry.stats = stats
    return retry


def _session(settings: TenantSettings, stats: GraphStats, pool: int) -> requests.Session:
    session = requests.Session()
    # trust_env=False: an environment REQUESTS_CA_BUNDLE would otherwise override `verify`.
    session.trust_env = False
    session.verify = settings.ca_bundle or True
    adapter = HTTPAdapter(max_retries=_retry_policy(stats), pool_connections=4, pool_maxsize=pool)
    session.mount("https://", adapter)
    return session


def resolve_credential(settings: TenantSettings) -> str | dict[str, str]:
    """The client secret (from the environment) or the certificate, for msal."""
    if settings.client_certificate_path:
        path = Path(settings.client_certificate_path).expanduser()
        try:
            pem = path.read_text()
        except OSError as exc:
            raise CredentialError(
                f"tenant {settings.slug}: client_certificate_path {str(path)!r} cannot be read "
                f"({exc.strerror})"
            ) from None
        return {"private_key": pem, "thumbprint": settings.client_certificate_thumbprint or ""}
    name = settings.client_secret_env
    if not name:
        raise CredentialError(
            f"tenant {settings.slug}: no credential configured; set client_secret_env "
            "(the name of an environment variable) or client_certificate_path"
        )
    secret = config.secret(name)
    if not secret:
        raise CredentialError(
            f"tenant {settings.slug}: environment variable {name} (client_secret_env) is not set; "
            "export the app registration's client secret value under that name"
        )
    return secret


_apps: dict[tuple[str, ...], msal.ConfidentialClientApplication] = {}
_apps_lock = threading.Lock()


def _msal_app(
    settings: TenantSettings, credential: str | dict[str, str], http: requests.Session
) -> msal.ConfidentialClientApplication:
    """One msal app per tenant and credential: msal caches the token until near expiry."""
    fingerprint = hashlib.sha256(repr(credential).encode()).hexdigest()
    key = (
        settings.slug,
        settings.client_id,
        settings.authority_host,
        settings.tenant_id,
        str(settings.ca_bundle),
        fingerprint,
    )
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            app = msal.ConfidentialClientApplication(
                settings.client_id,
                client_credential=credential,
                authority=f"{settings.authority_host}/{settings.tenant_id}",
                instance_discovery=settings.authority_host in KNOWN_AUTHORITIES,
                http_client=http,
            )
            _apps[key] = app
        return app


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
    ) -> None:
        self.settings = settings
        self.tenant = settings.slug
        self.stats = stats or GraphStats()
        self.base = f"{settings.graph_base_url}/{API_VERSION}"
        self.scope = [f"{settings.graph_base_url}/.default"]
        self.http = _session(settings, self.stats, pool_size)
        self.budget = budget or Budget(settings.client_id)
        self.delegated = None
        if settings.auth_mode == "delegated" and credential is None:
            from sync_pipeline.graph.auth import DelegatedTokens

            self.delegated = DelegatedTokens(settings, self.http)
            self._app = None
        else:
            self._app = _msal_app(settings, credential or resolve_credential(settings), self.http)

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
            raise self._error(response.status_code, _body(response), response.headers, path)
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
        return _json(self.request("GET", path_or_url, **kw))

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
            body = _json(response)
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


def _json(response: requests.Response) -> Any:
    """The body as JSON. orjson, not requests' `.json()`: parsing 1.5 M objects was a large part
    of a big tenant's read, on the threads that also keep the page chains going."""
    return orjson.loads(response.content)


def _body(response: requests.Response) -> Any:
    try:
        return _json(response)
    except (ValueError, jsonlib.JSONDecodeError):
        return {"error": {"code": "UnknownError", "message": response.reason or ""}}
