"""What must hold before a sync starts, checked in a second instead of failing a run later.

An unset secret variable, an unreadable CA file, a certificate that does not load, a Graph or
sign-in host that refuses or does not answer: none of them is fixed by a retry, so the CLI
checks them before it launches the job, and the Graph resource again before a run reads
(UI and scheduled runs then fail in their first step, without retries). A refused connection
is tried again for a few seconds (a host restarting), then reported with the host and what
to check.
"""

from __future__ import annotations

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


def check(settings: TenantSettings, *, retry_seconds: float = REFUSED_RETRY_SECONDS) -> None:
    """Raise CredentialError (or GraphUnreachable) naming the tenant, the setting and the value
    when the tenant's settings cannot work from this machine."""
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
