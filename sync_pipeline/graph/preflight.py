"""What must hold before a sync starts, checked in a second instead of failing a run later.

An unset secret variable, an unreadable CA file, a certificate that does not load, a Graph or
sign-in host that refuses or does not answer: none of them is fixed by a retry, so the CLI
checks them before it launches the job, and the Graph resource again before a run reads
(UI and scheduled runs then fail in their first step, without retries). A refused connection
is tried again for a few seconds (a host restarting), then reported with the host and what
to check.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import certifi

from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.graph.client import resolve_credential
from sync_pipeline.graph.errors import CredentialError, GraphUnreachable

REFUSED_RETRY_SECONDS = 4.0  # how long a refusing host is tried again
CONNECT_TIMEOUT = 5.0
# A CLI sync checks before it launches the run, and the run's Graph resource checks again a
# moment later in the same process: the same settings that passed this recently pass.
PASSED_RECENTLY_SECONDS = 10.0
_passed: dict[str, float] = {}  # the settings and credential -> when they last passed


def check_unless_passed(settings: TenantSettings) -> None:
    """`check`, unless the very same settings passed it in this process within
    PASSED_RECENTLY_SECONDS (the CLI's own preflight before the run it launches)."""
    try:
        passed = _passed.get(_key(settings))
    except CredentialError:
        passed = None  # check says why
    if passed is None or time.monotonic() - passed > PASSED_RECENTLY_SECONDS:
        check(settings)


def _key(settings: TenantSettings) -> str:
    """The settings and the credential they resolve to (a secret changed: checked again)."""
    if settings.auth_mode != "application":
        return settings.model_dump_json()
    credential = str(resolve_credential(settings)).encode()
    return settings.model_dump_json() + hashlib.sha256(credential).hexdigest()


def check(settings: TenantSettings, *, retry_seconds: float = REFUSED_RETRY_SECONDS) -> None:
    """Raise CredentialError (or GraphUnreachable) naming the tenant, the setting and the value
    when the tenant's settings cannot work from this machine."""
    _check(settings, retry_seconds)
    _passed[_key(settings)] = time.monotonic()


def _check(settings: TenantSettings, retry_seconds: float) -> None:
    if settings.auth_mode == "application":
        credential = resolve_credential(settings)
        if isinstance(credential, dict):
            _load_private_key(settings, credential["private_key"])
    else:
        from sync_pipeline.graph.auth import fernet

        fernet()  # the token cache's key: without it no delegated sync can sign in
    context = tls_context(settings)
    hosts = {settings.graph_base_url: "graph_base_url"}
    hosts.setdefault(settings.authority_host, "authority_host")
    for url, setting in hosts.items():
        reach(settings, url, setting, context, retry_seconds=retry_seconds)


def _load_private_key(settings: TenantSettings, pem: str) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(
            f"tenant {settings.slug}: client_certificate_path {settings.client_certificate_path!r}"
            f" holds no usable private key ({str(exc).split('.')[0]}); it must be an unencrypted"
            " PEM private key (with the certificate) whose thumbprint is uploaded to the app"
            " registration"
        ) from None


def tls_context(settings: TenantSettings) -> ssl.SSLContext:
    """The trust the Graph client uses: `ca_bundle` when set, else certifi's (as requests)."""
    cafile = settings.ca_bundle or certifi.where()
    try:
        return ssl.create_default_context(cafile=str(Path(cafile).expanduser()))
    except FileNotFoundError:
        problem = "does not exist"
    except PermissionError:
        problem = "cannot be read (permission denied)"
    except IsADirectoryError:
        problem = "is a directory, not a PEM file"
    except (ssl.SSLError, OSError, ValueError):
        problem = "holds no PEM certificate"
    raise CredentialError(
        f"tenant {settings.slug}: ca_bundle {settings.ca_bundle!r} {problem}; point it at a PEM "
        "file of the CA certificates that sign the Graph host's certificate, or unset it"
    )


def reach(
    settings: TenantSettings,
    url: str,
    setting: str,
    context: ssl.SSLContext,
    *,
    retry_seconds: float = REFUSED_RETRY_SECONDS,
) -> None:
    """Open a TLS connection to the host of `url` (the value of `setting`)."""
    split = urlsplit(url)
    host, port = split.hostname or "", split.port or 443
    where = f"{host}:{port}" if split.port else host
    prefix = f"tenant {settings.slug}: {setting} {url}"
    deadline, delay = time.monotonic() + retry_seconds, 0.25
    while True:
        try:
            with (
                socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as raw,
                context.wrap_socket(raw, server_hostname=host),
            ):
                return
        except ConnectionRefusedError:
            if time.monotonic() + delay < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            raise GraphUnreachable(
                f"{prefix}: {where} refused the connection (tried for {retry_seconds:g} s); "
                f"check {setting}, that the host is up and that this machine may reach it "
                "(firewall, proxy)"
            ) from None
        except socket.gaierror:
            raise GraphUnreachable(
                f"{prefix}: the host {host!r} is unknown (DNS); check {setting} and this "
                "machine's DNS"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise GraphUnreachable(
                f"{prefix}: {where}'s TLS certificate is not trusted ({exc.verify_message}); "
                "set ca_bundle to the PEM file of the CA that signs it"
            ) from None
        except TimeoutError:
            raise GraphUnreachable(
                f"{prefix}: {where} did not answer within {CONNECT_TIMEOUT:g} s; check "
                f"{setting} and the network (firewall, proxy)"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise GraphUnreachable(
                f"{prefix}: cannot connect to {where} ({exc.strerror or exc}); check {setting} "
                "and the network"
            ) from None
