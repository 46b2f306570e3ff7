"""What several commands do: save tenants (validated first), keep Dagster's partitions in
step, and launch a sync. Commands never import each other; they share these actions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sync_pipeline.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    err_console,
    handle_errors,
    prepare,
)
from sync_pipeline.core import config, db
from sync_pipeline.core.settings import SettingsError, TenantSettings
from sync_pipeline.graph import CredentialError, GraphError, preflight
from sync_pipeline.registry import tenants


def default_env(slug: str) -> str:
    """The client secret's variable a new tenant is offered: ACME_GRAPH_SECRET for acme."""
    return slug.upper().replace("-", "_") + "_GRAPH_SECRET"


def stored_or_none(conn: sa.Connection, slug: str) -> TenantSettings | None:
    """The tenant's settings, or None when it is not registered or no longer valid."""
    try:
        return tenants.get(conn, slug).settings
    except (tenants.UnknownTenantError, SettingsError):
        return None


def check_graph(new: TenantSettings, before: TenantSettings | None) -> None:
    """Group ids new in this version must exist in the tenant's Graph."""
    ids = tenants.new_group_ids(before, new)
    if not ids:
        return
    try:
        tenants.validate_against_graph(new, only=ids)
    except (GraphError, CredentialError) as exc:
        raise SettingsError(
            f"tenant {new.slug}: cannot read the tenant's groups to check "
            f"{', '.join(sorted(ids))}: {exc}. Fix the sign-in settings, or pass "
            "--no-graph-check (the run checks the ids again)"
        ) from None


def store(
    new: list[TenantSettings], *, graph_check: bool, preview: bool = False, yes: bool = False
) -> dict[str, int | None]:
    """Validate every tenant against the app (and Graph), then save all in one transaction.

    With `preview`, a change of scope is shown first, with what the next sync would do, and
    saved only once confirmed (`yes`, or an answer on a terminal; see cli/impact.py); else
    the process exits 1 with nothing written."""
    with db.engine().connect() as conn:
        before = {t.slug: stored_or_none(conn, t.slug) for t in new}
        for t in new:
            tenants.validate_against_app(conn, t)
    if graph_check:
        for t in new:
            check_graph(t, before[t.slug])
    if preview:
        from sync_pipeline.cli import impact

        impact.confirm_changes([(before[t.slug], t) for t in new], yes)
    with db.engine().begin() as conn:
        versions = {t.slug: tenants.save(conn, t) for t in new}
    partitions_add([t.slug for t in new])
    for t in new:
        warn_unset_secret(t)
    return versions


def warn_unset_secret(s: TenantSettings) -> None:
    """Saved, but say so when the secret's variable is unset here: every process that syncs
    (this CLI, the UI's run workers, the daemon's schedules) reads it from its own environment.
    """
    env = s.client_secret_env
    if s.fake_tenant or s.auth_mode != "application" or not env or config.secret(env):
        return
    err_console.print(
        f"[yellow]warning:[/] tenant {s.slug}: client_secret_env {env} is not set in this "
        f"environment; export {env} here to sync from this shell, and set it in the "
        "environments of the UI, the daemon and the run workers too (.env.example)",
        soft_wrap=True,
        markup=True,
        highlight=False,
    )


def partitions_add(slugs: list[str], instance: Any = None) -> None:
    """Keep Dagster's tenant partitions in step, so the UI can launch syncs at once."""
    import dagster as dg

    from sync_pipeline.defs.partitions import TENANT_PARTITIONS

    instance = instance or dg.DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(TENANT_PARTITIONS))
    new = [s for s in slugs if s not in known]
    if new:
        instance.add_dynamic_partitions(TENANT_PARTITIONS, new)


@handle_errors
def sync(
    tenant: str,
    *,
    dry_run: bool,
    allow_mass_deactivation: bool = False,
    full_read: bool = False,
    user: str | None = None,
) -> None:
    """Run the sync (or test sync) of one tenant in this process, with progress, and exit
    with the sync's exit code when it did not succeed (see the `sync` command); `user`: of
    that one person only."""
    from sync_pipeline.cli.syncrun import SyncRun, cli_instance

    try:
        prepare()
        from sync_pipeline.registry import demo

        with db.engine().connect() as conn:
            stored = tenants.get(conn, tenant)  # validates the settings before anything runs
        try:
            preflight.check(demo.serving(stored.settings))
        except CredentialError as exc:  # configuration: no run, no retry
            err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            raise SystemExit(EXIT_BAD_INPUT) from None
        partitions_add([tenant], cli_instance())
        run = SyncRun(stored, dry_run, allow_mass_deactivation, full_read, user)
    except KeyboardInterrupt:
        err_console.print(f"interrupted before the sync of {tenant} started: nothing changed")
        raise SystemExit(EXIT_INTERRUPTED) from None
    run.execute()
