"""How one person's decision is shown: `explain`, and `sync --user` after its run."""

from __future__ import annotations

from rich.panel import Panel

from sync_pipeline.cli.common import shown as escape
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.explain import lookup as explain


def explanation_panel(x: explain.Explanation) -> Panel:
    """One person's decision as a panel (`explain`, and `sync --user` after its run)."""
    who = (
        f"{escape(x.display_name or '(no name)')}  [dim]UPN {escape(x.upn or '-')} · Graph id "
        f"{escape(x.graph_id)}[/]"
    )
    lines = [who, ""]
    if not x.in_snapshot:
        lines.append(
            "[yellow]not decided yet:[/] extracted, but no transform has run since; run "
            "`sync-pipeline sync TENANT --dry-run`"
        )
    elif x.included:
        lines.append(f"[bold green]will be synced[/] as [bold]{escape(x.email or '')}[/]")
        groups = ", ".join(g.label for g in x.groups) or "none"
        lines.append(f"groups ({len(x.groups)}): {escape(groups)}")
        lines.append(f"manager: {escape(x.manager or x.manager_sentence or 'none')}")
        if x.mailbox_sentence:
            lines.append(escape(x.mailbox_sentence))
    else:
        lines.append("[bold red]will not be synced[/], because:")
        lines.extend(f"  • {escape(s)}" for s in x.sentences)
    lines.extend(f"[yellow]note:[/] {escape(s)}" for s in x.unreadable)
    lines.extend(f"[yellow]in the app:[/] {escape(s)}" for s in x.withheld)
    return Panel("\n".join(lines), expand=False)


def person_steps(
    read: dict[str, object], x: explain.Explanation | None, settings: TenantSettings
) -> list[str]:
    """`sync --user`: each step of the person's run with the setting that decided it, from
    the read's metadata (extract/person.py) and the decision (explain)."""
    lines = [
        f"read from Graph: {escape(str(read.get('person_upn') or read.get('person_graph_id')))} "
        f"({'new to the sync' if read.get('person_new') else 'known'}, account "
        f"{'enabled' if read.get('person_enabled') else 'disabled'}), "
        f"{read.get('person_requests', '?')} Graph request(s); delta links untouched",
    ]
    groups = str(read.get("person_groups") or "none")
    lines.append(f"direct groups now: {escape(groups)}")
    for key, what in (
        ("person_groups_joined", "joined"),
        ("person_groups_left", "left"),
        ("person_groups_kept", "kept as last read (hidden membership or unreadable)"),
    ):
        if read.get(key):
            lines.append(f"  {what}: {escape(str(read[key]))}")
    if read.get("person_groups_not_read_yet"):
        lines.append(
            f"  [yellow]not read yet[/] (created since the last sync; the next sync reads "
            f"them): {escape(str(read['person_groups_not_read_yet']))}"
        )
    manager = str(read.get("person_manager") or "")
    if manager and not read.get("person_manager_staged"):
        lines.append(f"manager {escape(manager)} is not in the last read: the next sync reads them")
    if x is None:
        return lines
    scope = f"user_scope: {settings.user_scope}"
    if settings.user_scope == "selected_groups":
        scope += f" ({len(settings.scope_group_ids)} scope group(s), nested ones included)"
    lines.append(
        f"scope ({scope}; include_disabled: {str(settings.include_disabled).lower()}, "
        f"include_guests: {str(settings.include_guests).lower()}, exclude_unlicensed: "
        f"{str(settings.exclude_unlicensed).lower()}"
        + (
            f", exclude_mailbox_types: {', '.join(settings.exclude_mailbox_types)}"
            if settings.exclude_mailbox_types
            else ""
        )
        + "): "
        + ("[green]in scope[/]" if x.included else "[red]left out[/]")
    )
    if x.included:
        lines.append(f"address (email_method: {settings.email_method}): {escape(x.email or '')}")
        lines.append(
            f"groups (include_groups: {str(settings.include_groups).lower()}, group_types: "
            f"{', '.join(settings.group_types)}): "
            + escape(", ".join(g.label for g in x.groups) or "none")
        )
        lines.append(
            f"manager (import_managers: {str(settings.import_managers).lower()}): "
            + escape(x.manager or x.manager_sentence or "none")
        )
    else:
        lines.extend(f"  • {escape(s)}" for s in x.sentences)
    return lines
