"""`sync-pipeline tenant ...`: register, list, show, export and remove tenants."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from sync_pipeline import db, settings, tenants
from sync_pipeline.cli.common import console, fail, handle_errors, prepare


def _partitions_add(slugs: list[str]) -> None:
    """Keep Dagster's tenant partitions in step, so the UI can launch syncs at once."""
    import dagster as dg

    from sync_pipeline.defs.partitions import TENANT_PARTITIONS

    instance = dg.DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(TENANT_PARTITIONS))
    new = [s for s in slugs if s not in known]
    if new:
        instance.add_dynamic_partitions(TENANT_PARTITIONS, new)


@click.group("tenant")
def tenant_group() -> None:
    """Tenants and their sync settings (YAML in and out)."""


@tenant_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@handle_errors
def import_(file: Path) -> None:
    """Register or update the tenants of a YAML FILE (a top-level `tenants:` list).

    Every tenant is validated first: one bad tenant and nothing is written.
    """
    parsed = settings.load_yaml(file.read_text(), source=str(file))
    prepare()
    with db.engine().begin() as conn:
        versions = {t.slug: tenants.save(conn, t) for t in parsed}
    _partitions_add([t.slug for t in parsed])
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
    """The registered tenants, their schedule and their last sync."""
    prepare()
    with db.engine().connect() as conn:
        stored = tenants.list_all(conn)
        last = {r.tenant: r for r in conn.execute(db.q("runs/last_per_tenant"))}
    table = Table("tenant", "tenant id", "auto sync", "last sync", "settings")
    for t in stored:
        s = t.settings
        auto = f"{s.effective_sync_time:%H:%M} {s.timezone}" if s.auto_sync else "off"
        run = last.get(s.slug)
        when = (
            f"{run.status} {run.started_at.astimezone(ZoneInfo(s.timezone)):%Y-%m-%d %H:%M %Z}"
            + (" (test)" if run.dry_run else "")
            if run
            else "never"
        )
        table.add_row(s.slug, s.tenant_id, auto, when, f"v{t.version}")
    console.print(table)


@tenant_group.command("show")
@click.argument("slug")
@handle_errors
def show(slug: str) -> None:
    """One tenant's settings, as YAML."""
    prepare()
    with db.engine().connect() as conn:
        stored = tenants.get(conn, slug)
    click.echo(settings.dump_yaml([stored.settings]), nl=False)


@tenant_group.command("remove")
@click.argument("slug")
@click.confirmation_option(prompt="Stop syncing this tenant? Its app data is kept.")
@handle_errors
def remove(slug: str) -> None:
    """Stop syncing a tenant. Its users in the app are kept, never deleted."""
    prepare()
    with db.engine().begin() as conn:
        if not tenants.remove(conn, slug):
            fail(f"no tenant {slug!r} is registered")
    console.print(f"{slug}: removed; its app data is kept")
