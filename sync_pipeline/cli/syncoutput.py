"""What `sync` says when a run ends: why it failed (a refusing check first), and the summary
table of the changes it made or would make, read from sync.runs and sync.diffs."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from rich.panel import Panel
from rich.table import Table

from sync_pipeline.cli.common import console
from sync_pipeline.cli.common import shown as escape
from sync_pipeline.cli.explainview import person_steps
from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.explain import lookup as explain
from sync_pipeline.load import diff
from sync_pipeline.load.seats import from_counts
from sync_pipeline.registry import runs

SAFETY_CHECK = "sync_diff_within_safety_limit"
# Checks that refuse a sync for being too big a change; --allow-mass-deactivation lifts them.
REFUSING_CHECKS = (SAFETY_CHECK, "snapshot_users_drift")


def failure_message(result: Any) -> tuple[str | None, str]:
    """What stopped the run: a failed blocking check first (its description says why and what
    to do), else the first failed step's own error."""
    import dagster as dg

    failed_checks = [
        e
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    failed_checks.sort(key=lambda e: e.check_name not in REFUSING_CHECKS)
    if failed_checks:
        lines = [
            f"check {e.asset_key.to_user_string()}:{e.check_name} failed: "
            f"{e.description or 'see the UI for the failed expectations'}"
            for e in failed_checks
        ]
        if any(e.check_name in REFUSING_CHECKS for e in failed_checks):
            tenant = result.dagster_run.tags.get("dagster/partition", "TENANT")
            lines.append(
                "Nothing was changed in the app. If this change is expected, run "
                f"`sync-pipeline sync {tenant} --allow-mass-deactivation`."
            )
        return None, "\n".join(lines)
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            if error is None:
                continue
            # A dg.Failure carries our message; other errors carry their innermost cause.
            while error.cause is not None and "Failure" not in error.cls_name:
                error = error.cause
            text = error.message.strip()
            # Dagster's message starts with the exception's class: the operator needs the text.
            prefix = f"{error.cls_name}: "
            text = text.split(prefix, 1)[1] if prefix in text else text.split(": ", 1)[-1]
            return event.step_key, " ".join(text.split())
    return None, "the run failed; open it in the UI (`sync-pipeline ui`) for the details"


def failure_code(result: Any) -> str | None:
    """The `code` metadata of the first failed step's dg.Failure (e.g. person_not_found)."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data.user_failure_data
            value = data.metadata.get("code") if data is not None else None
            if value is not None:
                return str(getattr(value, "value", value))
    return None


def _metadata(result: Any, node: str, key: str) -> dict[str, object]:
    import dagster as dg

    for mat in result.asset_materializations_for_node(node):
        if mat.asset_key == dg.AssetKey(key):
            return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return {}


def print_person(settings: TenantSettings, run_id: str, result: Any) -> None:
    """`sync --user`: what was read, what the rules decided and by which setting, and the
    changes of the person's run one by one (after the summary table)."""
    tenant = settings.slug
    read = _metadata(result, "graph_directory", "graph_users")
    planned = _metadata(result, "sync_diff", "sync_diff")
    with db.engine().connect() as conn:
        graph_id = str(read.get("person_graph_id") or "")
        found = [x for x in explain.lookup(conn, settings, graph_id) if x.graph_id == graph_id]
        row = runs.by_dagster_run(conn, tenant, run_id)
        changes = diff.diff_rows(conn, tenant, row.id, limit=200) if row else []
    x = found[0] if found else None
    lines = person_steps(read, x, settings)
    if planned.get("person_deferred"):
        lines.append(
            "[yellow]left to the next sync[/] (the group is not in the app yet): "
            + escape(str(planned["person_deferred"]))
        )
    if x is not None:
        lines.extend(f"[yellow]in the app:[/] {escape(s)}" for s in x.withheld)
    lines.append("changes of this run" + (":" if changes else ": none"))
    lines.extend(
        f"  {c['entity']} {c['action']}: {escape(str(c['who / what']))}"
        + (f"  {escape(str(c['before']))} → {escape(str(c['after']))}" if c["after"] else "")
        for c in changes
    )
    console.print(Panel("\n".join(lines), title=f"{tenant}: one person", expand=False))
    console.print(
        "[dim]Nobody else was changed; the next sync of the tenant reads the rest as usual.[/]"
    )


def print_summary(tenant: str, run_id: str, dry_run: bool, zone: ZoneInfo) -> None:
    """The run's changes by kind, as a table, then the user counts in one line, and the
    seats (active users before and after) when the run planned a diff."""
    with db.engine().connect() as conn:
        row = runs.by_dagster_run(conn, tenant, run_id)
        counts = runs.change_counts(conn, row.id) if row else {}
        planned = runs.planned(conn, row.id) if row else None
    verb = ("would change" if dry_run else "changed") if counts else "nothing to change"
    when = row.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if row else ""
    table = Table(title=f"{tenant}: {verb} (sync run {row.id if row else '?'}, {when})")
    table.add_column("change")
    table.add_column("count", justify="right")
    for key in sorted(counts):
        table.add_row(key.replace("_", " "), str(counts[key]))
    if not counts:
        table.add_row("nothing to change", "0")
    console.print(table)
    created, updated = counts.get("user_create", 0), counts.get("user_update", 0)
    deactivated = counts.get("user_deactivate", 0)
    console.print(
        f"users: {created} created, {updated} updated, {deactivated} deactivated"
        + (" (dry run: app unchanged)" if dry_run else "")
    )
    if planned is not None and "active_users" in planned:
        # the active users counted when the diff was planned, before any apply
        console.print(f"seats: {from_counts(counts, planned['active_users']).sentence()}")
