"""Serving the receiver: uvicorn in the foreground (the CLI) or on a thread (tests), with TLS
when given a certificate (Graph posts only to https URLs; in production an ingress or reverse
proxy usually ends TLS in front of it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
import uvicorn

from sync_pipeline.notifications.receiver import build_app


def _config(
    engine: Callable[[], sa.Engine],
    host: str,
    port: int,
    certfile: Path | None,
    keyfile: Path | None,
    log_level: str = "warning",
) -> uvicorn.Config:
    return uvicorn.Config(
        build_app(engine),
        host=host,
        port=port,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        log_level=log_level,
        lifespan="off",
        access_log=False,  # the query string of a handshake is Graph's token: no need to log
        proxy_headers=False,
        # SIGTERM ends it within seconds even with a proxy's keep-alive connections open;
        # a notification cut off is retried by Graph
        timeout_graceful_shutdown=5,
    )


def serve_forever(
    engine: Callable[[], sa.Engine],
    *,
    host: str,
    port: int,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn's own handlers end it in order)."""
    uvicorn.Server(_config(engine, host, port, certfile, keyfile, "info")).run()


class Receiver:
    """The receiver on a thread (tests, benchmarks): `start()`, `url`, `stop()`."""

    def __init__(
        self,
        engine: Callable[[], sa.Engine],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        self._server = uvicorn.Server(_config(engine, host, port, certfile, keyfile))
        self._thread: threading.Thread | None = None
        self._host = host
        self._tls = certfile is not None
        self.port: int | None = None

    def start(self) -> Receiver:
        thread = threading.Thread(target=self._server.run, name="receiver", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the receiver failed to start on {self._host}")
            time.sleep(0.005)
        self._thread = thread
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._host}:{self.port}/notifications"

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
