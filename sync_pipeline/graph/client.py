"""The Graph client: one msal app per tenant, requests with urllib3 retries, paging to the end.

Retries (429/503/504 and dropped connections) are urllib3's `Retry`, honouring `Retry-After`;
the subclass below only adds what urllib3 lacks: fractional `Retry-After` ("2.128", as Graph
sends) and counting the retries and the seconds spent waiting, for the run's metadata.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sync_pipeline.graph.errors import (
    CredentialError,
    GraphAuthError,
    GraphError,
    auth_hint,
    permission_for,
)
from sync_pipeline.settings import TenantSettings

API_VERSION = "v1.0"
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
    resource_units: int = 0
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
        status_forcelist=(429, 500, 502, 503, 504),
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
    secret = os.environ.get(name)
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
    """Reads one tenant's directory. Thread-safe: extraction fans requests out over threads."""

    def __init__(
        self,
        settings: TenantSettings,
        *,
        credential: str | dict[str, str] | None = None,
        stats: GraphStats | None = None,
        pool_size: int = 16,
    ) -> None:
        self.settings = settings
        self.tenant = settings.slug
        self.stats = stats or GraphStats()
        self.base = f"{settings.graph_base_url}/{API_VERSION}"
        self.scope = [f"{settings.graph_base_url}/.default"]
        self.http = _session(settings, self.stats, pool_size)
        self._app = _msal_app(settings, credential or resolve_credential(settings), self.http)

    # -- tokens ---------------------------------------------------------------------------
    def token(self) -> str:
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
        if path_or_url.startswith("https://"):
            return path_or_url
        return f"{self.base}{path_or_url}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> requests.Response:
        url = self._url(path_or_url)
        send = {"Authorization": f"Bearer {self.token()}", **(headers or {})}
        path = urlsplit(url).path
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
        units = response.headers.get("x-ms-resource-unit")
        self.stats.add(requests=1, resource_units=int(units) if units and units.isdigit() else 0)
        if response.status_code not in ok:
            raise self._error(response, path)
        return response

    def _error(self, response: requests.Response, path: str) -> GraphError:
        code, message, request_id = "UnknownError", response.reason or "", None
        try:
            body = response.json().get("error", {})
            code = body.get("code", code)
            message = body.get("message", message)
            request_id = (body.get("innerError") or {}).get("request-id")
        except (ValueError, AttributeError):
            pass
        request_id = request_id or response.headers.get("request-id")
        hint = None
        if response.status_code == 403 or code == "Authorization_RequestDenied":
            hint = (
                f"The app lacks the application permission {permission_for(path)}: add it in "
                "the app registration and grant admin consent"
            )
        elif response.status_code == 401:
            hint = "The token was refused: check tenant_id, client_id and graph_base_url"
        elif response.status_code == 429:
            hint = "Graph kept throttling after every retry; the next run will continue"
        return GraphError(
            tenant=self.tenant,
            status=response.status_code,
            code=code,
            message=message,
            path=path,
            request_id=request_id,
            hint=hint,
        )

    def get(self, path_or_url: str, **kw: Any) -> dict[str, Any]:
        return self.request("GET", path_or_url, **kw).json()

    def pages(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following @odata.nextLink to the end.

        The nextLink carries all query options, so params go on the first call only; headers
        (ConsistencyLevel) are sent on every page, as Graph requires.
        """
        body = self.get(path, params=params, headers=headers)
        yield body
        while next_link := body.get("@odata.nextLink"):
            body = self.get(next_link, headers=headers)
            yield body

    def collection(self, path: str, **kw: Any) -> Iterator[list[dict[str, Any]]]:
        for page in self.pages(path, **kw):
            value = page.get("value")
            if not isinstance(value, list):
                raise GraphError(
                    tenant=self.tenant,
                    status=200,
                    code="MalformedPage",
                    message="a page had no 'value' list",
                    path=path,
                    hint="The read is incomplete; nothing was loaded",
                )
            yield value

    def close(self) -> None:
        self.http.close()
