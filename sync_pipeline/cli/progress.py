"""The sync's progress lines: one per stage, with the counts an operator reads at a glance.

Built from the run's own event log (step starts, materialisations, failures); nothing here
knows how the run was launched.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

# Step key -> the stage an operator knows it by.
STAGES = {
    "graph_directory": "extract",
    "staging_checks": "extract checks",
    "directory_snapshot": "transform",
    "snapshot_checks": "transform checks",
    "sync_diff": "diff",
    "diff_checks": "diff checks",
    "app_directory": "apply",
    "test_sync_report": "report",
}
APPLY_STEP = "app_directory"
_EXTRACT_KEYS = {"graph_users", "graph_groups", "graph_group_members"}


def stage(step_key: str | None) -> str:
    return STAGES.get(step_key or "", step_key or "start")


def _n(meta: dict[str, Any], key: str) -> int:
    return int(meta.get(key, 0) or 0)


def _changes(meta: dict[str, Any], *, done: bool) -> str:
    """created / updated / deactivated users, then groups and memberships, from diff counts."""
    created = _n(meta, "user_create") + _n(meta, "user_adopt")
    updated = _n(meta, "user_update") + _n(meta, "user_reactivate")
    verbs = ("created", "updated", "deactivated") if done else ("create", "update", "deactivate")
    parts = [
        f"{verbs[0]} {created}",
        f"{verbs[1]} {updated}",
        f"{verbs[2]} {_n(meta, 'user_deactivate')}",
    ]
    if _n(meta, "user_adopt") or _n(meta, "user_reactivate"):
        parts.append(
            f"(adopted {_n(meta, 'user_adopt')}, reactivated {_n(meta, 'user_reactivate')})"
        )
    groups = f"groups +{_n(meta, 'group_create')} -{_n(meta, 'group_remove')}"
    members = f"members +{_n(meta, 'membership_add')} -{_n(meta, 'membership_remove')}"
    lead = "users: " if done else "users would "
    return f"{lead}{', '.join(parts)}; {groups}; {members}"


def _excluded(meta: dict[str, Any], prefix: str) -> str:
    reasons = {
        k.removeprefix(prefix): int(v)
        for k, v in sorted(meta.items())
        if k.startswith(prefix) and isinstance(v, int) and v
    }
    if not reasons:
        return "none"
    return ", ".join(f"{reason} {n}" for reason, n in reasons.items())


class Progress:
    """Turns event-log records into lines; keeps the step running now (for Ctrl-C)."""

    def __init__(self) -> None:
        self.running: str | None = None  # step key started and not finished
        self.finished: list[str] = []  # step keys that succeeded, in order
        self._extract: dict[str, dict[str, Any]] = {}
        self.stopping = False  # a stop was asked: a step failing now ends on the request

    def line(self, event: Any) -> str | None:
        import dagster as dg
        from dagster._core.execution.plan.objects import ErrorSource

        kind = event.dagster_event.event_type
        step = event.step_key or ""
        if kind == dg.DagsterEventType.STEP_START:
            self.running = step
            return None if step.endswith("_checks") else f"[cyan]▶[/] {stage(step)}"
        if kind == dg.DagsterEventType.STEP_SUCCESS:
            self.running = None
            self.finished.append(step)
            return self._extract_line() if step == "graph_directory" else None
        if kind == dg.DagsterEventType.STEP_FAILURE:
            self.running = None
            data = event.dagster_event.step_failure_data
            interrupted = data is not None and data.error_source == ErrorSource.INTERRUPT
            if interrupted or self.stopping:
                return f"[yellow]■[/] {stage(step)}: stopped"
            return f"[red]✗[/] {stage(step)}"
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.dagster_event.event_specific_data.materialization
            meta = {k: v.value for k, v in mat.metadata.items()}
            return self._materialized(mat.asset_key.to_user_string(), meta)
        return None

    def _materialized(self, key: str, meta: dict[str, Any]) -> str | None:
        if key in _EXTRACT_KEYS:
            self._extract[key] = meta  # one line for the whole read, at the step's end
            return None
        if key == "snapshot_users":
            return (
                f"[green]✓[/] transform  users in scope {_n(meta, 'users_included')}; "
                f"excluded: {_excluded(meta, 'excluded_')}"
            )
        if key == "snapshot_groups":
            return (
                f"[green]✓[/] transform  groups imported {_n(meta, 'groups_included')}, "
                f"mapped {_n(meta, 'groups_mapped')}; "
                f"left out: {_excluded(meta, 'groups_excluded_')}"
            )
        if key == "sync_diff":
            return f"[green]✓[/] diff  {_changes(meta, done=False)}"
        if key == "app_directory":
            return f"[green]✓[/] apply  {_changes(meta, done=True)}"
        if key == "test_sync_report":
            return f"[green]✓[/] report  {meta.get('sent_to', '')}"
        return None

    def _extract_line(self) -> str:
        users = self._extract.get("graph_users", {})
        groups = self._extract.get("graph_groups", {})
        members = self._extract.get("graph_group_members", {})
        if users.get("mode") == "one person":
            return (
                f"[green]✓[/] extract  one person: {escape(str(users.get('person_upn') or ''))} "
                f"({_n(users, 'graph_requests')} Graph requests; delta links untouched)"
            )
        modes = {users.get("mode_users"), users.get("mode_groups")} - {None}
        mode = "/".join(sorted(str(m) for m in modes)) or "read"
        return (
            f"[green]✓[/] extract  users {_n(users, 'users')}, groups {_n(groups, 'groups')}, "
            f"memberships {_n(members, 'group_members')} ({mode}; "
            f"{_n(users, 'graph_requests')} Graph requests)"
        )
