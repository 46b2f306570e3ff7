"""Sign-in against the fake over HTTPS: certificate credential, delegated device-code connect,
silent refresh on the encrypted cache, and a clear failure once the refresh token is revoked."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sync_pipeline.extract.extraction import extract
from sync_pipeline.graph import CredentialError, GraphAuthError, GraphClient
from sync_pipeline.graph.auth import SECRET_KEY_ENV, connect
from sync_pipeline.registry import tenants
from sync_pipeline_tests.support.fakegraph import settings_for


def _certificate() -> tuple[str, str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sync-pipeline")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=9))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key_pem, cert_pem, cert.fingerprint(hashes.SHA1()).hex().upper()


def _staged_users(engine: sa.Engine, tenant: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM staging.users WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()


def test_certificate_credential_sync(engine, fake_graph, fake_tenant, tenant_slug, tmp_path):
    key_pem, cert_pem, thumbprint = _certificate()
    fake_graph.register_certificate(fake_tenant["tenant_id"], cert_pem)
    path = tmp_path / "app.pem"
    path.write_text(key_pem)
    settings = settings_for(
        tenant_slug,
        fake_tenant,
        fake_graph,
        client_secret_env=None,
        client_certificate_path=str(path),
        client_certificate_thumbprint=thumbprint,
    )
    client = GraphClient(settings)
    with engine.begin() as conn:
        extract(client, conn, tenant_slug)
    assert _staged_users(engine, tenant_slug) == len(fake_tenant["users"])


@pytest.fixture
def delegated_fake(fake_tenant, tmp_path):
    """A fake of our own: the test revokes its refresh tokens."""
    from sync_pipeline.fakegraph import FakeGraph

    fake = FakeGraph([fake_tenant], secrets={}, state_dir=tmp_path, device_code_interval=1)
    yield fake.start()
    fake.stop()


def test_delegated_connect_sync_then_revoked(
    engine, delegated_fake, fake_tenant, tenant_slug, monkeypatch
):
    monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
    settings = settings_for(
        tenant_slug, fake_tenant, delegated_fake, auth_mode="delegated", client_secret_env=None
    )
    with engine.begin() as conn:
        tenants.save(conn, settings)
    shown = []

    def approve(flow):
        shown.append(flow["user_code"])
        delegated_fake.approve_device_code(flow["user_code"])

    address = connect(settings, engine, approve)
    admin = next(
        u for u in fake_tenant["users"] if u["accountEnabled"] and u["userType"] == "Member"
    )
    assert shown and address == admin["userPrincipalName"]
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT cache FROM sync.token_caches WHERE tenant = :t"), {"t": tenant_slug}
        ).scalar_one()
    assert b"refresh_token" not in bytes(stored) and b"access_token" not in bytes(stored)

    client = GraphClient(settings)
    client.delegated.engine = engine
    with engine.begin() as conn:
        extract(client, conn, tenant_slug)
    assert _staged_users(engine, tenant_slug) == len(fake_tenant["users"])

    delegated_fake.revoke_refresh_tokens(fake_tenant["tenant_id"])
    client = GraphClient(settings)
    client.delegated.engine = engine
    with pytest.raises(GraphAuthError, match=rf"tenant connect {tenant_slug}") as failure:
        with engine.begin() as conn:
            extract(client, conn, tenant_slug)
    assert "AADSTS50173" in str(failure.value)


def test_delegated_needs_the_secret_key(engine, fake_graph, fake_tenant, tenant_slug, monkeypatch):
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    settings = settings_for(
        tenant_slug, fake_tenant, fake_graph, auth_mode="delegated", client_secret_env=None
    )
    with pytest.raises(CredentialError, match="SYNC_PIPELINE_SECRET_KEY is not set"):
        connect(settings, engine, lambda flow: None)
    monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
    client = GraphClient(settings)
    client.delegated.engine = engine
    with pytest.raises(CredentialError, match=f"tenant connect {tenant_slug}"):
        client.token()
