"""`sync-pipeline tenant connect TENANT`: sign a tenant's admin in (delegated permissions).

The device-code flow: the command prints a code and a URL, the admin signs in from any
browser, and the msal token cache is kept encrypted in the database (SYNC_PIPELINE_SECRET_KEY).
Later syncs refresh the token silently. The signed-in address becomes the tenant's
`admin_email` (where test-sync reports go) unless one is set already.
"""

from __future__ import annotations

from typing import Any

import click

from sync_pipeline.cli.common import EXIT_FAILED, console, err_console, fail, handle_errors, prepare
from sync_pipeline.core import db
from sync_pipeline.registry import demo, tenants


@click.command("connect")
@click.argument("tenant")
@handle_errors
def connect_command(tenant: str) -> None:
    """Sign TENANT's admin in with a device code; later syncs use that sign-in."""
    prepare()
    from sync_pipeline.graph import GraphAuthError
    from sync_pipeline.graph.auth import connect

    with db.engine().connect() as conn:
        stored = tenants.get(conn, tenant)
    settings = stored.settings
    if settings.auth_mode != "delegated":
        fail(
            f"tenant {tenant}: auth_mode is {settings.auth_mode!r}; set auth_mode: delegated "
            "(sync-pipeline tenant import) before connecting an admin"
        )

    def show(flow: dict[str, Any]) -> None:
        console.print(
            flow.get("message") or f"Enter {flow['user_code']} at {flow['verification_uri']}"
        )
        err_console.print("[dim]waiting for the sign-in… (Ctrl-C to give up)[/]")

    try:
        address = connect(demo.serving(settings), db.engine(), show)
    except GraphAuthError as exc:
        fail(str(exc), EXIT_FAILED)
    if address and not settings.admin_email:
        with db.engine().begin() as conn:
            tenants.save(conn, settings.model_copy(update={"admin_email": address}))
        console.print(f"admin_email set to {address} (test-sync reports go there)")
    console.print(f"[green]connected[/] {tenant} as {address or 'the signed-in admin'}")
