"""Graph change notifications end to end: the receiver on loopback over TLS (a CA of the
test's own, which the fake Graph verifies it with), real Postgres, the fake Graph over HTTPS
creating subscriptions and sending notifications and lifecycle events, and the sensors
evaluated with dg.build_sensor_context at an injected time."""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import trustme

from sync_pipeline.notifications import state
from sync_pipeline.notifications.server import Receiver


@pytest.fixture(scope="module")
def receiver_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA file, certificate, key) for a receiver on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("receiver-tls")
    ca = trustme.CA(organization_name="sync-pipeline test receiver")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    cert_file.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    key_file.write_bytes(cert.private_key_pem.bytes())
    return ca_file, cert_file, key_file


@pytest.fixture(scope="module")
def receiver(database_url: str, receiver_tls: tuple[Path, Path, Path]) -> Iterator[Receiver]:
    from sync_pipeline.core import db

    _, cert, key = receiver_tls
    with Receiver(lambda: db.engine(database_url), certfile=cert, keyfile=key) as running:
        yield running


def post(receiver: Receiver, ca: Path, url: str | None = None, **kw) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(ca)
        return session.post(url or receiver.url, timeout=10, **kw)


def subscribe(engine: sa.Engine, tenant: str, resource: str = "users") -> tuple[str, str]:
    """A subscription row as the subscriptions sensor saves it: (id, clientState)."""
    sub_id, client_state = secrets.token_hex(8), secrets.token_urlsafe(32)
    with engine.begin() as conn:
        state.save(
            conn,
            tenant,
            resource,
            sub_id,
            client_state,
            "https://127.0.0.1/notifications",
            dt.datetime.now(dt.UTC) + dt.timedelta(days=20),
        )
    return sub_id, client_state


def dirty_marks(engine: sa.Engine, tenant: str) -> list[state.Dirty]:
    with engine.connect() as conn:
        return [d for d in state.dirty(conn) if d.tenant == tenant]


def change(sub_id: str, client_state: str, user_id: str = "u1") -> dict:
    return {
        "subscriptionId": sub_id,
        "clientState": client_state,
        "changeType": "updated",
        "resource": f"Users/{user_id}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.User",
            "@odata.id": f"Users/{user_id}",
            "id": user_id,
        },
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "tenantId": "00000000-0000-0000-0000-000000000001",
    }


def test_handshake_echoes_the_decoded_token(receiver, receiver_tls) -> None:
    token = "Validation: Testing client application reachability <&> 1+1"
    url = f"{receiver.url}?{urllib.parse.urlencode({'validationToken': token})}"
    answer = post(receiver, receiver_tls[0], url, data=b"")
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == "text/plain"
    assert answer.text == token


def test_valid_notification_marks_the_tenant_dirty(receiver, receiver_tls, engine, tenant_slug):
    sub_id, client_state = subscribe(engine, tenant_slug)
    body = {"value": [change(sub_id, client_state, "a"), change(sub_id, client_state, "b")]}
    answer = post(receiver, receiver_tls[0], json=body)
    assert answer.status_code == 202
    (mark,) = dirty_marks(engine, tenant_slug)
    assert (mark.notifications, mark.reason) == (2, "notification")
    with engine.connect() as conn:
        assert state.counts(conn, tenant_slug) == {"accepted": 2}


def test_forged_client_state_is_rejected_counted_and_marks_nothing(
    receiver, receiver_tls, engine, tenant_slug
) -> None:
    sub_id, client_state = subscribe(engine, tenant_slug)
    forged = change(sub_id, "not-" + client_state)
    answer = post(receiver, receiver_tls[0], json={"value": [forged]})
    assert answer.status_code == 403
    unknown = post(receiver, receiver_tls[0], json={"value": [change("nope", client_state)]})
    assert unknown.status_code == 403
    assert dirty_marks(engine, tenant_slug) == []
    with engine.connect() as conn:
        assert state.counts(conn, tenant_slug) == {"rejected": 1}
        assert state.counts(conn, state.UNKNOWN_TENANT).get("rejected", 0) >= 1
    assert client_state not in answer.text


def test_lifecycle_events_are_recorded_and_missed_marks_dirty(
    receiver, receiver_tls, engine, tenant_slug
) -> None:
    sub_id, client_state = subscribe(engine, tenant_slug)
    base = {
        "subscriptionId": sub_id,
        "clientState": client_state,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "tenantId": "00000000-0000-0000-0000-000000000001",
    }
    answer = post(
        receiver,
        receiver_tls[0],
        json={"value": [base | {"lifecycleEvent": "reauthorizationRequired"}]},
    )
    assert answer.status_code == 202
    assert dirty_marks(engine, tenant_slug) == []
    with engine.connect() as conn:
        assert (
            state.subscriptions(conn, tenant_slug)["users"].lifecycle == "reauthorizationRequired"
        )
    answer = post(receiver, receiver_tls[0], json={"value": [base | {"lifecycleEvent": "missed"}]})
    assert answer.status_code == 202
    (mark,) = dirty_marks(engine, tenant_slug)
    assert mark.reason == "missed"


def test_malformed_bodies_are_refused(receiver, receiver_tls) -> None:
    assert post(receiver, receiver_tls[0], data=b"{").status_code == 400
    assert post(receiver, receiver_tls[0], json={"value": []}).status_code == 400
