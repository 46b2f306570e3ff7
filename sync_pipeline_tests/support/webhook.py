"""An HTTPS webhook receiver on loopback for the outbox's tests: verifies each delivery's
signature, answers the status codes it is told to, and records what it took."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_pipeline.outbox import delivery
from sync_pipeline_tests.support.loopback import receiver_tls


@dataclass
class Received:
    event_id: int
    delivery: str
    status: int
    event: dict[str, Any]


@dataclass
class Receiver:
    secret: bytes
    ca_file: Path
    url: str = ""
    answers: list[int] = field(default_factory=list)  # status codes to give first, in order
    always: int = 200  # then this
    received: list[Received] = field(default_factory=list)
    bad_signatures: int = 0
    _server: http.server.ThreadingHTTPServer | None = None

    def accepted_ids(self) -> list[int]:
        return [r.event_id for r in self.received if 200 <= r.status < 300]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def start_receiver(folder: Path, secret: bytes) -> Receiver:
    """A receiver on https://127.0.0.1:<free port>/hooks/directory (its own CA: ca_file)."""
    ca_file, cert, key = receiver_tls(folder)
    receiver = Receiver(secret=secret, ca_file=ca_file)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            signed = delivery.verify(
                receiver.secret,
                self.headers["X-Sync-Pipeline-Timestamp"],
                body,
                self.headers["X-Sync-Pipeline-Signature"],
            )
            event = json.loads(body)
            if not signed or int(self.headers["X-Sync-Pipeline-Event-Id"]) != event["id"]:
                receiver.bad_signatures += 1
                status = 401
            else:
                status = receiver.answers.pop(0) if receiver.answers else receiver.always
            receiver.received.append(
                Received(event["id"], self.headers["X-Sync-Pipeline-Delivery"], status, event)
            )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver._server = server
    receiver.url = f"https://127.0.0.1:{server.server_address[1]}/hooks/directory"
    return receiver
