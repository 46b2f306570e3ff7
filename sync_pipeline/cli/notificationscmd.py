"""`sync-pipeline notifications serve`: the receiver of Graph change notifications
(sync_pipeline/notifications/receiver.py)."""

from __future__ import annotations

from pathlib import Path

import click

from sync_pipeline.cli.common import console, fail, handle_errors, prepare


@click.group("notifications")
def notifications_group() -> None:
    """Graph change notifications: the receiver that marks tenants for a sync."""


@notifications_group.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (loopback by default; put an ingress or reverse proxy with a "
    "public https:// URL in front of it).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Serve https with this certificate (PEM) instead of plain http behind a proxy.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The certificate's private key (PEM).",
)
@handle_errors
def serve_command(host: str, port: int, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Receive Graph change notifications until interrupted.

    Answers Graph's validationToken handshake, checks each notification's clientState
    against its subscription's secret (a mismatch is rejected and counted), records the
    tenant as dirty in Postgres and answers 202; the notification_syncs sensor then runs an
    incremental sync. Tenants subscribe with change_notifications: true and a public
    notification_url that reaches this service.
    """
    from sync_pipeline.core import db
    from sync_pipeline.notifications.server import serve_forever

    if (tls_cert is None) != (tls_key is None):
        fail("give both --tls-cert and --tls-key, or neither")
    prepare()
    scheme = "https" if tls_cert else "http"
    console.print(f"receiving Graph change notifications on {scheme}://{host}:{port}/")
    serve_forever(db.engine, host=host, port=port, certfile=tls_cert, keyfile=tls_key)
