"""The Graph client's credentials: the client secret or certificate, and one msal app per
tenant and credential, which caches the app-only token until near expiry.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import msal
import requests

from sync_pipeline.core import config
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.graph.errors import CredentialError

KNOWN_AUTHORITIES = {
    "https://login.microsoftonline.com",
    "https://login.microsoftonline.us",
    "https://login.chinacloudapi.cn",
}


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


def msal_app(
    settings: TenantSettings,
    credential: str | dict[str, str],
    http: requests.Session,
    *,
    shared: bool = True,
) -> msal.ConfidentialClientApplication:
    """One msal app per tenant and credential: msal caches the token until near expiry.
    `shared=False`: an app of its own, whose first token is a new one (`doctor` reads the
    permissions granted now, not those of a token cached an hour ago)."""
    if not shared:
        return msal.ConfidentialClientApplication(
            settings.client_id,
            client_credential=credential,
            authority=f"{settings.authority_host}/{settings.tenant_id}",
            instance_discovery=settings.authority_host in KNOWN_AUTHORITIES,
            http_client=http,
        )
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
