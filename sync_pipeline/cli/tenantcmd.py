"""`sync-pipeline tenant ...`: add, set, import, export, list, show and remove tenants
(`tenant setup` is the wizard's, `tenant connect` connectcmd's).

Every change is validated before anything is written: the settings model, mapping targets
against the app's groups, and group ids new to this version against the tenant's Graph.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table

from sync_pipeline.cli import impact
from sync_pipeline.cli.actions import default_env, store, stored_or_none
from sync_pipeline.cli.common import Guid, console, fail, handle_errors, prepare
from sync_pipeline.core import db, settings
from sync_pipeline.core.settings import SettingsError, TenantSettings
from sync_pipeline.registry import runs, schedule, staleness, tenants

WHOLE_ROWS = 240  # characters: `tenant list` printed anywhere but a terminal
YES = click.option("--yes", is_flag=True, help=impact.YES_HELP)
NO_GRAPH_CHECK = click.option(
    "--no-graph-check",
    is_flag=True,
    help="Do not read the tenant's groups from Graph to check group ids (the run checks them).",
)


@click.group("tenant")
def tenant_group() -> None:
    """Tenants and their sync settings (YAML in and out)."""


@tenant_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@NO_GRAPH_CHECK
@YES
@handle_errors
def import_(file: Path, no_graph_check: bool, yes: bool) -> None:
    """Register or update the tenants of a YAML FILE (a top-level `tenants:` list).

    Every tenant is validated first (settings, mapping targets in the app, group ids in
    Graph): one bad tenant and nothing is written. A registered tenant whose scope changes
    (who or which groups are imported, the address rule, the deny list) is previewed first:
    what its next sync would do, then a question before anything is saved.
    """
    text = settings.read_file(file, what="the settings file")
    parsed = settings.load_yaml(text, source=str(file))
    prepare()
    versions = store(parsed, graph_check=not no_graph_check, preview=True, yes=yes)
    for slug, version in versions.items():
        state = f"version {version}" if version else "unchanged"
        console.print(f"{slug}: {state}")


@tenant_group.command("export")
@click.argument("slugs", nargs=-1)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@handle_errors
def export(slugs: tuple[str, ...], output: Path | None) -> None:
    """Write tenants' settings as YAML (all tenants when no SLUG is given)."""
    prepare()
    with db.engine().connect() as conn:
        chosen = (
            [tenants.get(conn, s).settings for s in slugs]
            if slugs
            else [t.settings for t in tenants.list_all(conn)]
        )
    text = settings.dump_yaml(chosen)
    if output:
        output.write_text(text)
        console.print(f"wrote {len(chosen)} tenant(s) to {output}")
    else:
        click.echo(text, nl=False)


@tenant_group.command("list")
@handle_errors
def list_() -> None:
    """The registered tenants, their schedule, their last sync, and how long ago their last
    complete read of Graph and their last applied sync were (a read older than the tenant's
    stale_after_hours is marked stale)."""
    prepare()
    now = dt.datetime.now(dt.UTC)
    with db.engine().connect() as conn:
        stored = tenants.list_all(conn)
        last = runs.last_per_tenant(conn)
        fresh = {f.tenant: f for f in staleness.freshness(conn, [t.settings for t in stored], now)}
    table = Table(
        "tenant",
        "tenant id",
        "auto sync",
        "next sync",
        "last sync",
        "last complete read",
        "last applied sync",
        "settings",
    )
    # slugs and times stay whole (and findable) on a narrow terminal; the other columns fold
    for column in (0, 3, 4):
        table.columns[column].no_wrap = True
    for t in stored:
        s = t.settings
        auto = f"{s.effective_sync_time:%H:%M} {s.timezone}" if s.auto_sync else "off"
        if s.auto_sync and s.sync_interval:
            auto += f", every {s.sync_interval} min"
        upcoming = "-"
        if s.auto_sync:
            nxt = schedule.next_sync(s, now).astimezone(ZoneInfo(s.timezone))
            upcoming = f"{nxt:%Y-%m-%d %H:%M %Z}"
        run = last.get(s.slug)
        when = (
            f"{run.status} {run.started_at.astimezone(ZoneInfo(s.timezone)):%Y-%m-%d %H:%M %Z}"
            + (" (test)" if run.dry_run else "")
            if run
            else "never"
        )
        f = fresh.get(s.slug)
        read, applied = (_ago(f.read_age), _ago(f.applied_age)) if f else ("?", "?")
        if f is not None and f.stale:
            read = f"[bold red]{read}, stale[/] (over {s.stale_after_hours} h)"
        table.add_row(s.slug, s.tenant_id, auto, upcoming, when, read, applied, f"v{t.version}")
    # Eight columns fold to nothing in rich's 80 columns off a terminal: a pipe or a file
    # (scripts, logs) gets whole rows, a terminal its own width.
    wide = (
        console
        if console.is_terminal
        else Console(width=max(console.width, WHOLE_ROWS), highlight=False)
    )
    wide.print(table)


def _ago(delta: dt.timedelta | None) -> str:
    return "never" if delta is None else f"{staleness.age(delta)} ago"


@tenant_group.command("show")
@click.argument("slug")
@click.option("--history", "with_history", is_flag=True, help="List earlier versions too.")
@handle_errors
def show(slug: str, with_history: bool) -> None:
    """One tenant's settings, as YAML (with --history: every earlier version and when)."""
    prepare()
    with db.engine().connect() as conn:
        stored = tenants.get(conn, slug)
        past = tenants.history(conn, slug) if with_history else []
    click.echo(settings.dump_yaml([stored.settings]), nl=False)
    if not with_history:
        return
    zone = ZoneInfo(stored.settings.timezone)
    table = Table("version", "in force from", "replaced at", "changed by the next version")
    table.add_row(
        f"v{stored.version} (current)", f"{stored.updated_at.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}"
    )
    newer = stored.settings.to_document()
    for old in past:
        changed = sorted(
            k for k in newer.keys() | old.settings.keys() if newer.get(k) != old.settings.get(k)
        )
        table.add_row(
            f"v{old.version}",
            f"{old.valid_from.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}",
            f"{old.replaced_at.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}",
            ", ".join(changed) or "(removed and added again)",
        )
        newer = old.settings
    console.print(table)


@tenant_group.command("add")
@click.argument("slug")
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--tenant-id", type=Guid(), help="Microsoft's directory (tenant) id.")
@click.option("--client-id", type=Guid(), help="The app registration's client id.")
@click.option(
    "--client-secret-env", help="NAME of the environment variable holding the client secret."
)
@click.option("--fake-tenant", help="Serve this bundled fake tenant (demo) instead of Microsoft.")
@click.option("--admin-email", help="Where test sync reports go.")
@NO_GRAPH_CHECK
@handle_errors
def add(
    slug: str,
    assignments: tuple[str, ...],
    tenant_id: str | None,
    client_id: str | None,
    client_secret_env: str | None,
    fake_tenant: str | None,
    admin_email: str | None,
    no_graph_check: bool,
) -> None:
    """Register a new tenant SLUG; asks for the sign-in details not given as options.

    Any other setting can follow as KEY=VALUE (e.g. email_method=mail_then_upn). For every
    step with an explanation, use `sync-pipeline tenant setup SLUG` instead.
    """
    prepare()
    with db.engine().connect() as conn:
        if stored_or_none(conn, slug) is not None:
            fail(f"tenant {slug} is already registered; change it with `tenant set {slug} ...`")
    doc: dict[str, Any] = {"slug": slug}
    if fake_tenant:
        doc["fake_tenant"] = fake_tenant
    doc["tenant_id"] = tenant_id or click.prompt("Directory (tenant) id", type=Guid())
    doc["client_id"] = client_id or click.prompt("Application (client) id", type=Guid())
    doc["client_secret_env"] = client_secret_env or click.prompt(
        "Environment variable holding the client secret", default=default_env(slug)
    )
    if admin_email:
        doc["admin_email"] = admin_email
    base = settings.parse_settings(doc, source="tenant add")
    new = settings.assign(base, settings.parse_assignments(assignments, slug))
    versions = store([new], graph_check=not no_graph_check)
    console.print(f"{slug}: added (version {versions[slug]})")


@tenant_group.command("set")
@click.argument("slug")
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option(
    "--deny-list-csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replace email_deny_list with the addresses of a CSV file (any column).",
)
@click.option("--append", is_flag=True, help="With --deny-list-csv: add to the list instead.")
@NO_GRAPH_CHECK
@YES
@handle_errors
def set_(
    slug: str,
    assignments: tuple[str, ...],
    deny_list_csv: Path | None,
    append: bool,
    no_graph_check: bool,
    yes: bool,
) -> None:
    """Change settings of tenant SLUG: KEY=VALUE pairs, typed by the settings model.

    Lists take a,b,c; mappings take id=App group,id2=Other; an empty value restores the
    default. The previous version is kept (`tenant show SLUG --history`).

    A change of scope (user_scope, scope_group_ids, include_*, exclude_unlicensed,
    exclude_mailbox_types, email_method, group_types, group_ids, email_deny_list) first
    shows what the next sync would do, computed on the latest read from Graph without
    writing anything: joiners, leavers, address and membership changes, seats, the safety
    limit; then asks.
    """
    if not assignments and not deny_list_csv:
        fail("nothing to set: give KEY=VALUE pairs or --deny-list-csv FILE")
    prepare()
    with db.engine().connect() as conn:
        current = tenants.get(conn, slug).settings
    new = settings.assign(current, settings.parse_assignments(assignments, slug))
    if deny_list_csv:
        try:
            text = settings.read_file(deny_list_csv, what="the deny list")
        except SettingsError as exc:
            raise SettingsError(f"tenant {slug}: email_deny_list: {exc}") from None
        entries = settings.deny_list_from_csv(text, source=str(deny_list_csv), slug=slug)
        if append:
            have = {e.lower() for e in new.email_deny_list}
            entries = new.email_deny_list + [e for e in entries if e.lower() not in have]
        new = settings.parse_settings(
            new.to_document() | {"email_deny_list": entries}, source="settings"
        )
    version = store([new], graph_check=not no_graph_check, preview=True, yes=yes)[slug]
    before, after = current.to_document(), new.to_document()
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            default = TenantSettings.model_fields[key].get_default(call_default_factory=True)
            shown = after.get(key, f"{default} (default)")
            if key == "email_deny_list":
                shown = f"{len(new.email_deny_list)} entries"
            console.print(f"{slug}: {key} = {shown}")
    console.print(f"{slug}: " + (f"version {version}" if version else "unchanged"))


@tenant_group.command("remove")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def remove(slug: str, yes: bool) -> None:
    """Stop syncing a tenant. Its users in the app are kept, never deleted."""
    prepare()
    with db.engine().connect() as conn:
        tenants.require(conn, slug)  # an unknown tenant: exit 2 before anything is asked
    if not yes:
        click.confirm(f"Stop syncing {slug}? Its app data is kept.", abort=True)
    with db.engine().begin() as conn:
        if not tenants.remove(conn, slug):  # removed meanwhile by someone else
            fail(f"no tenant {slug!r} is registered")
    console.print(f"{slug}: removed; its app data is kept")
