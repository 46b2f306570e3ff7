"""`sync-pipeline demo`: register the demo tenant, served by the bundled fake Graph.

On the embedded server the demo is registered out of the box (the quick start syncs it at
once). A DATABASE_URL server may be production: there the demo's generated users would land
in the real `app.*` tables, so it is registered only with an explicit flag.
"""

from __future__ import annotations

import click

from sync_pipeline.cli.actions import store
from sync_pipeline.cli.common import EXIT_BAD_INPUT, console, fail, handle_errors, prepare
from sync_pipeline.core import db, settings
from sync_pipeline.registry import tenants


@click.command("demo")
@click.option(
    "--auto-sync",
    is_flag=True,
    help="Also turn on the demo's daily schedule (off by default).",
)
@click.option(
    "--allow-database-url",
    is_flag=True,
    help="Register the demo on the DATABASE_URL server too (it adds generated users to app.*).",
)
@handle_errors
def demo_command(auto_sync: bool, allow_database_url: bool) -> None:
    """Register the demo tenant contoso-demo (the bundled fake Graph), then sync it with
    `sync-pipeline sync contoso-demo`.

    Its daily schedule stays off unless --auto-sync. Refused when DATABASE_URL is set, unless
    --allow-database-url: that server may be production.
    """
    from sync_pipeline.fakegraph import bundled_tenant

    users = len(bundled_tenant(tenants.DEMO_SLUG)["users"])
    if not db.using_embedded() and not allow_database_url:
        fail(
            f"DATABASE_URL is set ({db.redact(db.check_url(db.database_url()))}): the demo "
            f"tenant {tenants.DEMO_SLUG} would add {users} generated users to that server's "
            "app.* tables. If this server is for trying sync-pipeline out, run "
            "`sync-pipeline demo --allow-database-url`; or unset DATABASE_URL to use the "
            "embedded server",
            EXIT_BAD_INPUT,
        )
    prepare()
    with db.engine().connect() as conn:
        try:
            current = tenants.get(conn, tenants.DEMO_SLUG).settings
        except (tenants.UnknownTenantError, settings.SettingsError):
            current = None  # never registered, removed, or no longer valid: register it afresh
    if current is None:
        new = tenants.demo_settings(auto_sync=auto_sync)
    else:  # keep what was changed in the demo's settings; only turn the schedule on if asked
        new = settings.assign(current, {"auto_sync": "true"}) if auto_sync else current
    version = store([new], graph_check=False)[tenants.DEMO_SLUG]
    state = "registered" if current is None else ("updated" if version else "already registered")
    schedule = (
        f"daily at {new.effective_sync_time:%H:%M} {new.timezone}"
        if new.auto_sync
        else "no daily schedule (--auto-sync turns it on)"
    )
    console.print(f"{tenants.DEMO_SLUG}: {state}, {users} generated users, {schedule}")
    console.print(f"Sync it with: sync-pipeline sync {tenants.DEMO_SLUG}")
