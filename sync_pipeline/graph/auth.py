"""Delegated sign-in: a Graph admin's msal token cache, kept encrypted in sync.token_caches.

`connect` signs an admin in with the device-code flow (`sync-pipeline tenant connect`); each
sync then calls `DelegatedTokens.token()`, which refreshes silently through msal and writes
the refreshed cache back. The cache is encrypted with Fernet (cryptography) under the key in
SYNC_PIPELINE_SECRET_KEY; without the key nothing delegated can run, and a lost key means
signing in again. Application credentials (secret, certificate) stay in client.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msal
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from sync_pipeline.core import config, db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.graph.errors import CredentialError, GraphAuthError, auth_hint

SECRET_KEY_ENV = config.SECRET_KEY
KNOWN_AUTHORITIES = {
    "https://login.microsoftonline.com",
    "https://login.microsoftonline.us",
    "https://login.chinacloudapi.cn",
}
_GENERATE = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def fernet() -> Fernet:
    """The cache cipher; a missing or malformed key is a clear error, not a crash."""
    key = config.secret_key()
    if not key:
        raise CredentialError(
            f"{SECRET_KEY_ENV} is not set: delegated sign-in keeps its token cache encrypted "
            f"with it. Generate one with `{_GENERATE}`, keep it in your secret store and export "
            "it for every sync-pipeline process (a lost key means `tenant connect` again)"
        )
    try:
        return Fernet(key.encode())
    except ValueError:
        raise CredentialError(
            f"{SECRET_KEY_ENV} is not a Fernet key (32 url-safe base64-encoded bytes); "
            f"generate one with `{_GENERATE}`"
        ) from None


def scopes(settings: TenantSettings) -> list[str]:
    """The token scope follows the Graph host (national clouds, the fake)."""
    return [f"{settings.graph_base_url}/.default"]


def public_app(
    settings: TenantSettings, http: requests.Session, cache: msal.SerializableTokenCache
) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        settings.client_id,
        authority=f"{settings.authority_host}/{settings.tenant_id}",
        token_cache=cache,
        http_client=http,
        instance_discovery=settings.authority_host in KNOWN_AUTHORITIES,
    )


def load_cache(
    conn: sa.Connection, slug: str
) -> tuple[msal.SerializableTokenCache, str | None] | None:
    row = conn.execute(db.q("graph/load_token_cache"), {"t": slug}).first()
    if row is None:
        return None
    cache = msal.SerializableTokenCache()
    try:
        cache.deserialize(fernet().decrypt(bytes(row.cache)).decode())
    except InvalidToken:
        raise CredentialError(
            f"tenant {slug}: the stored sign-in cannot be decrypted with {SECRET_KEY_ENV} (the "
            f"key changed?); run `sync-pipeline tenant connect {slug}` again"
        ) from None
    return cache, row.account


def save_cache(
    conn: sa.Connection, slug: str, cache: msal.SerializableTokenCache, account: str | None
) -> None:
    token = fernet().encrypt(cache.serialize().encode())
    conn.execute(db.q("graph/save_token_cache"), {"t": slug, "account": account, "cache": token})


def _fail(settings: TenantSettings, result: dict[str, Any] | None) -> GraphAuthError:
    result = result or {}
    error = str(result.get("error", "no_account"))
    description = str(result.get("error_description", "no signed-in admin in the cache"))
    return GraphAuthError(
        tenant=settings.slug,
        error=error,
        description=description,
        hint=(
            f"{auth_hint(error, description)}. The delegated sign-in is no longer valid: run "
            f"`sync-pipeline tenant connect {settings.slug}` again"
        ),
    )


def connect(
    settings: TenantSettings,
    engine: sa.Engine,
    show: Callable[[dict[str, Any]], None],
    http: requests.Session | None = None,
) -> str:
    """Device-code sign-in; stores the encrypted cache. Returns the signed-in address."""
    fernet()  # fail before the admin types a code, not after
    http = http or _plain_session(settings)
    cache = msal.SerializableTokenCache()
    app = public_app(settings, http, cache)
    flow = app.initiate_device_flow(scopes=scopes(settings))
    if "user_code" not in flow:
        raise _fail(settings, flow)
    show(flow)
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        raise _fail(settings, result)
    claims = result.get("id_token_claims") or {}
    address = claims.get("preferred_username") or claims.get("email")
    with engine.begin() as conn:
        save_cache(conn, settings.slug, cache, address)
    return str(address or "")


def _plain_session(settings: TenantSettings) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # an environment REQUESTS_CA_BUNDLE would override `verify`
    session.verify = settings.ca_bundle or True
    return session


class DelegatedTokens:
    """Access tokens for a connected tenant, refreshed silently; the cache is saved back."""

    def __init__(
        self, settings: TenantSettings, http: requests.Session, engine: sa.Engine | None = None
    ) -> None:
        self.settings, self.http, self.engine = settings, http, engine
        self._lock = threading.Lock()
        self._app: msal.PublicClientApplication | None = None
        self._cache: msal.SerializableTokenCache | None = None
        self.account: str | None = None
        self._refreshed = False

    def _load(self) -> msal.PublicClientApplication:
        engine = self.engine or db.engine()
        with engine.connect() as conn:
            loaded = load_cache(conn, self.settings.slug)
        if loaded is None:
            raise CredentialError(
                f"tenant {self.settings.slug}: auth_mode is delegated but no admin has signed "
                f"in; run `sync-pipeline tenant connect {self.settings.slug}`"
            )
        self._cache, self.account = loaded
        return public_app(self.settings, self.http, self._cache)

    def token(self) -> str:
        with self._lock:
            if self._app is None:
                self._app = self._load()
            accounts = self._app.get_accounts()
            if not accounts:
                raise _fail(self.settings, None)
            # The first token of a sync is refreshed for real: a revoked or expired sign-in
            # then fails the run at its start with the fix, not halfway through a read.
            result = self._app.acquire_token_silent_with_error(
                scopes(self.settings), account=accounts[0], force_refresh=not self._refreshed
            )
            self._refreshed = True
            if not result or "access_token" not in result:
                raise _fail(self.settings, result)
            assert self._cache is not None
            if self._cache.has_state_changed:
                with (self.engine or db.engine()).begin() as conn:
                    save_cache(conn, self.settings.slug, self._cache, None)
                self._cache.has_state_changed = False
            return str(result["access_token"])
