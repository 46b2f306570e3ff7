"""`sync-pipeline fakegraph serve`: the bundled fake Microsoft Graph as a standalone server."""

from __future__ import annotations

from pathlib import Path

import click

from sync_pipeline.cli.common import console, handle_errors
from sync_pipeline.core import config


@click.group("fakegraph")
def fakegraph_group() -> None:
    """The bundled fake Microsoft Graph (HTTPS, msal-compatible sign-in)."""


@fakegraph_group.command("serve")
@click.option(
    "--tenant-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A tenant document (JSON) to serve.",
)
@click.option("--users", type=click.IntRange(1, 2_000_000), help="Generate a tenant this large.")
@click.option("--seed", type=int, default=1, show_default=True, help="Generator seed.")
@click.option(
    "--hidden-groups",
    type=click.IntRange(0, 100),
    default=0,
    show_default=True,
    help="With --users: add this many hidden-membership groups (need Member.Read.Hidden).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True)
@click.option(
    "--secret-env",
    default="FAKEGRAPH_CLIENT_SECRET",
    show_default=True,
    help="Environment variable holding the client secret the fake accepts.",
)
@handle_errors
def serve(
    tenant_file: Path | None,
    users: int | None,
    seed: int,
    hidden_groups: int,
    port: int,
    secret_env: str,
) -> None:
    """Serve one fake tenant until interrupted: --tenant-file F, or --users N [--seed S]."""
    from sync_pipeline.core import db
    from sync_pipeline.fakegraph import generate_tenant, load_tenant_file
    from sync_pipeline.fakegraph.server import serve_forever

    if (tenant_file is None) == (users is None):
        raise click.UsageError("give exactly one of --tenant-file or --users")
    doc = (
        load_tenant_file(tenant_file)
        if tenant_file
        else generate_tenant(
            name=f"generated-{users}", users=users or 0, seed=seed, hidden_groups=hidden_groups
        )
    )
    secret = config.secret(secret_env)
    if not secret:
        raise click.UsageError(f"set {secret_env} to the client secret the fake should accept")
    console.print(
        f"serving {doc['name']}: tenant_id {doc['tenant_id']}, client_id {doc['client_id']}, "
        f"{len(doc['users'])} users"
    )
    serve_forever(doc, port=port, secret=secret, state_dir=db.home() / "fakegraph")
