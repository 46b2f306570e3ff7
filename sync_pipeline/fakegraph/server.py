"""The bundled fake Microsoft Graph and Entra ID token endpoint, served over local TLS.

One HTTPS server answers both the login endpoints (`/{tenant_id}/oauth2/v2.0/token`, the
OpenID configuration, device code) and Graph (`/v1.0/...`), so that msal's
`ConfidentialClientApplication` and `requests` talk to it exactly as to Microsoft. The
behaviour follows docs/graph.md: paging, `$select`, `$count`, `$expand=manager`, `$batch`,
resource-unit throttling, delta queries (with `$deltatoken=latest`, and updated objects as
Graph sends them: properties never set left out, or with `Prefer: return=minimal` only the
changed ones) and error shapes. An admin API under `/_admin/` (and the same operations as
Python methods) mutates tenants between rounds.

This module starts the server (a CA kept in state_dir, uvicorn with TLS on a thread, the
Starlette app); each concern lives in a module of its own, assembled in `FakeGraph`: the
options and state (`base`), login (`login`, `tokens`), directory reads (`directory`, with
`odata`), delta (`delta`), `$batch` (`batch`), throttling and faults (`throttle`, `costs`),
permissions, the admin API (`admin`) and the tenant model (`tenant`, `mutations`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_pipeline.fakegraph.base import REQUESTS_PER_SECOND
from sync_pipeline.fakegraph.costs import cost as _cost
from sync_pipeline.fakegraph.dispatch import _Dispatch
from sync_pipeline.fakegraph.tokens import TOKEN_LIFETIME
from sync_pipeline.fakegraph.wire import _DROP, GraphError, _Resp

# `_cost` is imported from here by the client's tests (the fake's own cost, beside the
# client's); the others are the names this module always offered.
__all__ = [
    "REQUESTS_PER_SECOND",
    "TOKEN_LIFETIME",
    "FakeGraph",
    "GraphError",
    "_cost",
    "serve_forever",
]

log = logging.getLogger(__name__)


class FakeGraph(_Dispatch):
    """A local HTTPS Microsoft Graph + Entra ID token endpoint for one or more tenants."""

    # -- lifecycle
    def start(self) -> FakeGraph:
        if self._server is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = self._load_or_make_ca()
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        cert_file = self.state_dir / "server.pem"
        key_file = self.state_dir / "server-key.pem"
        _write_private(cert_file, b"".join(b.bytes() for b in server_cert.cert_chain_pems))
        _write_private(key_file, server_cert.private_key_pem.bytes())
        app = self._build_app()
        config = uvicorn.Config(
            app,
            host=self._host,
            port=self._requested_port,
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            log_level="warning",
            lifespan="off",
            proxy_headers=False,
            access_log=False,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        # Off the main thread uvicorn installs no signal handlers: Ctrl-C stays the caller's.
        thread = threading.Thread(target=server.run, name="fakegraph", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"fake Graph failed to start on {self._host}:{self._requested_port}"
                )
            time.sleep(0.005)
        self._server, self._thread = server, thread
        self.port = server.servers[0].sockets[0].getsockname()[1]
        info = {
            "base_url": self.base_url,
            "ca_path": str(self.ca_path),
            "tenants": [
                {"tenant_id": t.tenant_id, "client_id": t.client_id, "name": t.name}
                for t in self._tenants.values()
            ],
        }
        (self.state_dir / "fakegraph.json").write_text(json.dumps(info, indent=2))
        return self

    def stop(self) -> None:
        if self._courier is not None and self._courier.is_alive():
            self._outbox.put(None)  # the notification courier ends after what is queued
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        server.force_exit = True  # idle keep-alive TLS connections would hold shutdown for 30 s
        thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("fake Graph is not started")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{self.port}"

    def _load_or_make_ca(self) -> trustme.CA:
        """Reuse the CA kept in state_dir (clients keep trusting it across restarts)."""
        key_path = self.state_dir / "ca-key.pem"
        if self.ca_path.is_file() and key_path.is_file():
            try:
                return trustme.CA.from_pem(self.ca_path.read_bytes(), key_path.read_bytes())
            except ValueError:
                log.warning("fake Graph: unreadable CA in %s, making a new one", self.state_dir)
        ca = trustme.CA(organization_name="sync-pipeline fake Graph")
        _write_private(key_path, ca.private_key_pem.bytes())
        tmp = self.ca_path.with_suffix(".tmp")
        tmp.write_bytes(ca.cert_pem.bytes())
        tmp.replace(self.ca_path)
        return ca

    # -- ASGI
    def _build_app(self) -> Callable:
        fake = self

        class Endpoint:
            async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
                request = Request(scope, receive)
                body = await request.body()
                path = scope["path"]
                headers = {k.lower(): v for k, v in request.headers.items()}
                # Outlook requests count as in flight from here, the latency included
                arrival = fake.outlook_enter(scope["method"], path, headers, body)
                try:
                    if fake.latency and not path.startswith("/_admin"):
                        await asyncio.sleep(fake.latency)
                    base = f"https://{headers.get('host') or fake._netloc()}"
                    resp = fake.handle(
                        scope["method"],
                        path,
                        scope.get("query_string", b"").decode(),
                        headers,
                        body,
                        base,
                        arrival,
                    )
                finally:
                    fake.outlook_leave(arrival)
                if resp is _DROP:
                    raw_send = scope.get("fakegraph.send")
                    cycle = getattr(raw_send, "__self__", None)
                    transport = getattr(cycle, "transport", None)
                    if transport is not None:
                        cycle.disconnected = True  # type: ignore[union-attr]
                        transport.close()
                        return
                    resp = _Resp(502, b"")
                assert isinstance(resp, _Resp)
                await Response(
                    resp.body,
                    status_code=resp.status,
                    headers=resp.headers,
                    media_type=resp.media_type,
                )(scope, receive, send)

        inner = Starlette(routes=[Route("/{path:path}", endpoint=Endpoint())])

        async def app(scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] == "http":
                scope["fakegraph.send"] = send
            await inner(scope, receive, send)

        return app

    def _netloc(self) -> str:
        return f"{self._host}:{self.port}"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


def serve_forever(
    tenant: dict,
    *,
    port: int,
    secret: str,
    state_dir: Path,
    host: str = "127.0.0.1",
    on_ready: Callable[[FakeGraph], None] | None = None,
    **options: Any,
) -> None:
    """Serve one tenant until interrupted (the `sync-pipeline fakegraph serve` command).

    `on_ready` is called with the started server (base_url, ca_path) so the CLI can print how
    to connect; `options` are passed on to FakeGraph (throttle=True, latency=..., ...).
    """
    fake = FakeGraph(
        [tenant],
        secrets={tenant["tenant_id"]: secret},
        host=host,
        port=port,
        state_dir=state_dir,
        **options,
    )
    fake.start()
    log.info(
        "fake Graph for %s at %s (tenant_id %s, client_id %s, CA %s)",
        tenant.get("name"),
        fake.base_url,
        tenant["tenant_id"],
        tenant["client_id"],
        fake.ca_path,
    )
    if on_ready is not None:
        on_ready(fake)
    stop = threading.Event()
    try:
        while not stop.wait(0.5):
            if fake._thread is None or not fake._thread.is_alive():
                break
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
