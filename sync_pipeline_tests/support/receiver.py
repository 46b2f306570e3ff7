"""A TLS certificate for a notification receiver on loopback: the fake Graph posts only over
https, and verifies the receiver with the CA given to it (`notification_ca`). Shared by the
notification tests and the freshness benchmark."""

from __future__ import annotations

from pathlib import Path


def receiver_tls(folder: Path) -> tuple[Path, Path, Path]:
    """(CA file, certificate chain, key) for a receiver on 127.0.0.1, written into `folder`."""
    import trustme

    ca = trustme.CA(organization_name="sync-pipeline test receiver")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    cert_file.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    key_file.write_bytes(cert.private_key_pem.bytes())
    return ca_file, cert_file, key_file
