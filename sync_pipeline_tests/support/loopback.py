"""Keeping tests on loopback: TLS material for a receiver on 127.0.0.1, and a guard that
refuses (and records) every connection a Python process tries to a non-loopback address.

The guard is a `sitecustomize` module put first on the PYTHONPATH of the processes a test
starts (the folder holds nothing else, so no project code comes from it). It wraps
`socket.socket.connect` / `connect_ex` (requests, urllib3, msal, smtplib and asyncio all
connect through them) and `socket.getaddrinfo` (a name other than loopback's or the
machine's own is not even looked up). Connections made by C libraries (libpq, gRPC's core)
bypass it: the test checks the addresses it gives them instead (`assert_loopback`).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from pathlib import Path

import trustme

GUARD_LOG_ENV = "SP_TEST_LOOPBACK_GUARD_LOG"

_GUARD = '''"""Test guard (sync_pipeline_tests/support/loopback.py): loopback connections only."""
import ipaddress
import os
import socket

_LOG = os.environ.get("SP_TEST_LOOPBACK_GUARD_LOG")
_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", socket.gethostname()}


def _loopback_host(host):
    if host is None or host in _NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what):
    if _LOG:
        with open(_LOG, "a") as log:
            log.write(f"{os.getpid()} {what}\\n")
    raise ConnectionRefusedError(f"test guard: {what} is not loopback")


def _checked(real):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback_host(address[0]):
            _refuse(f"connect {address!r}")
        return real(self, address)

    return connect


socket.socket.connect = _checked(socket.socket.connect)
socket.socket.connect_ex = _checked(socket.socket.connect_ex)
_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if not _loopback_host(name):
        _refuse(f"lookup {name!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _guarded_getaddrinfo
'''


def install_guard(folder: Path) -> tuple[Path, Path]:
    """Write the guard into `folder`; (the folder for PYTHONPATH, the log it records to,
    named by GUARD_LOG_ENV)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_GUARD)
    log = folder.parent / "loopback-guard.log"
    log.touch()
    return folder, log


def refused(log: Path) -> list[str]:
    """What the guard refused so far, one line per attempt (pid, what)."""
    return [line for line in log.read_text().splitlines() if line.strip()]


def assert_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    assert ok, f"{url} is not a loopback URL"


def receiver_tls(folder: Path) -> tuple[Path, Path, Path]:
    """(CA file, certificate, key) for a receiver on 127.0.0.1, from a CA of the test's own."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="sync-pipeline test receiver")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    cert_file.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    key_file.write_bytes(cert.private_key_pem.bytes())
    return ca_file, cert_file, key_file
