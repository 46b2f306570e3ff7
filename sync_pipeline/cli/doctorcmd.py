"""`sync-pipeline doctor TENANT | --all`: a tenant's credential and permission health
(sync_pipeline/graph/health.py), without reading its directory."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from sync_pipeline.cli.common import console, fail, handle_errors, prepare
from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.graph import health
from sync_pipeline.registry import demo, tenants

# Exit codes (README): 0 every check passed; 1 a check failed (a sync would fail: a missing
# permission, a refused sign-in, an expired credential, a clock past the tolerance); 5 only
# warnings (a credential expiring within 30 days, an old sign-in, some clock skew); 2 bad input.
EXIT_WARN = 5
_EXIT = {health.OK: 0, health.WARN: EXIT_WARN, health.FAIL: 1}
_STYLE = {health.OK: "green", health.WARN: "yellow", health.FAIL: "red", health.UNKNOWN: "dim"}


def examine(settings: TenantSettings) -> list[health.Finding]:
    with db.engine().connect() as conn:
        hidden, refreshed_at = health.facts(conn, settings.slug)
    return health.examine(demo.serving(settings), hidden_groups=hidden, refreshed_at=refreshed_at)


@click.command("doctor")
@click.argument("tenant", required=False)
@click.option("--all", "every", is_flag=True, help="Every registered tenant.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per finding, per line.")
@handle_errors
def doctor_command(tenant: str | None, every: bool, as_json: bool) -> None:
    """Check TENANT's sign-in, permissions, credential expiry and clock, without reading its
    directory: the permissions in the access token (`roles`, or `scp` when delegated) against
    those its settings need, the certificate's or secret's expiry, a delegated sign-in's age,
    and this machine's clock against Graph's.

    Exit 0 when every check passes, 5 when some only warn (a credential expires within 30
    days), 1 when one fails (a sync would fail), 2 for bad input.
    """
    if bool(tenant) == every:
        fail("name a TENANT or pass --all (not both)")
    prepare()
    with db.engine().connect() as conn:
        chosen = (
            [t.settings for t in tenants.list_all(conn)]
            if every
            else [tenants.get(conn, str(tenant)).settings]
        )
    statuses = []
    for settings in chosen:
        findings = examine(settings)
        statuses.append(health.worst(findings))
        if as_json:
            for f in findings:
                click.echo(
                    json.dumps(
                        {
                            "tenant": settings.slug,
                            "check": f.check,
                            "status": f.status,
                            "detail": f.detail,
                            "expires_at": f.expires_at.isoformat() if f.expires_at else None,
                        }
                    )
                )
            continue
        table = Table(title=f"{settings.slug}: {health.worst(findings)}")
        for name in ("check", "status", "detail"):
            table.add_column(name, overflow="fold")
        for f in findings:
            style = _STYLE[f.status]
            table.add_row(escape(f.check), f"[{style}]{f.status}[/]", escape(f.detail))
        console.print(table)
    worst = health.worst([health.Finding("", s, "") for s in statuses])
    raise SystemExit(_EXIT[worst])
