"""The impact preview `tenant set`, `tenant import` and the wizard show before saving a
change of scope: what the next sync would do (sync_pipeline.load.preview), and the question
whether to save it.

A change is saved only once confirmed: `--yes`, or an answer on a terminal. Without a
terminal and without `--yes` nothing is saved (exit 1) rather than a script waiting for an
answer nobody gives. A tenant never synced has nothing to preview: it is saved, saying so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import click
from rich.markup import escape

from sync_pipeline.cli.common import EXIT_FAILED, console, err_console
from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.load import preview
from sync_pipeline.load.preview import Impact, Person

YES_HELP = (
    "Save without asking, after showing the impact preview (for scripts); without it a change "
    "of scope is asked about on a terminal and refused elsewhere."
)


def show(impact: Impact, zone: ZoneInfo, changed: list[str]) -> None:
    """Print the impact: the counts, the seats, the first leavers and joiners, the limit."""
    c = impact.counts
    when = f"{impact.extracted_at.astimezone(zone):%Y-%m-%d %H:%M %Z}"
    console.print(
        f"[bold]{impact.tenant}[/]: with the new {', '.join(changed)}, the next sync would "
        f"make these changes (computed on the directory as read from Graph at {when}, "
        "without writing anything):",
        soft_wrap=True,
    )
    lines = [
        f"joiners: {impact.joiners_total:,} ({c['user_create']:,} new, "
        f"{c['user_reactivate']:,} reactivated)",
        f"leavers: {impact.leavers_total:,} (deactivated, never deleted"
        + (
            f"; {impact.leavers_later:,} of them only after the grace period or a review"
            if impact.leavers_later
            else ""
        )
        + ")",
        f"address changes: {impact.address_changes:,}",
        f"memberships: +{c['membership_add']:,} / \N{MINUS SIGN}{c['membership_remove']:,}",
    ]
    if c["user_adopt"]:
        lines.append(f"app users adopted (already active): {c['user_adopt']:,}")
    if c["group_create"] or c["group_remove"]:
        lines.append(f"groups: +{c['group_create']:,} / \N{MINUS SIGN}{c['group_remove']:,}")
    lines.append(f"seats: {impact.seats.sentence('after the next sync')}")
    for line in lines:
        console.print(f"  {line}", soft_wrap=True)
    _people("leavers", impact.leavers, impact.leavers_total)
    _people("joiners", impact.joiners, impact.joiners_total)
    if impact.mailbox_types_unread:
        console.print(
            f"  [yellow]note:[/] the mailbox type of {impact.mailbox_types_unread:,} people is "
            "not read yet (exclude_mailbox_types): the next sync reads it from Graph "
            "(MailboxSettings.Read) before deciding, so it may leave out more than shown",
            soft_wrap=True,
        )
    if impact.over_safety_limit:
        err_console.print(
            f"[bold yellow]warning:[/] {escape(impact.safety_message)}", soft_wrap=True
        )


def _people(title: str, people: list[Person], total: int) -> None:
    if not people:
        return
    head = f"first {len(people)} of {total:,}" if total > len(people) else f"{total:,}"
    console.print(f"  {title} ({head}):")
    for p in people:
        why = ""
        if p.action in ("deactivate", "pending", "held"):
            when = {"pending": ", after the grace period", "held": ", held for review"}
            why = f" ({p.reason or 'no longer in Graph'}{when.get(p.action, '')})"
        elif p.action == "reactivate":
            why = " (reactivated)"
        console.print(f"    {escape(p.email or '(no address)')}{why}", soft_wrap=True)


@dataclass(frozen=True)
class Question:
    """What to ask before saving a change of scope: `what` is "the change of SLUG" with its
    caveat; `risky` when it goes over the safety limit or could not be previewed."""

    what: str
    risky: bool


def preview_change(before: TenantSettings | None, after: TenantSettings) -> Question | None:
    """Print the impact of the change from `before` (None: not registered) to `after` when
    it changes scope, and return what to ask; None when there is nothing to ask (no change
    of scope, or a tenant never synced: said so)."""
    changed = preview.scope_changes(before, after)
    if not changed:
        return None
    what = f"the change of {after.slug}"
    try:
        found = preview.compute(db.engine(), after)
    except preview.NeverSynced as exc:
        console.print(f"{escape(str(exc))}; saving without a preview.", soft_wrap=True)
        return None
    except preview.PreviewUnavailable as exc:
        err_console.print(f"[bold yellow]warning:[/] {escape(str(exc))}", soft_wrap=True)
        return Question(f"{what} (no preview)", risky=True)
    show(found, ZoneInfo(after.timezone), changed)
    if found.over_safety_limit:
        return Question(f"{what} (over the safety limit)", risky=True)
    return Question(what, risky=False)


def confirm_changes(changes: list[tuple[TenantSettings | None, TenantSettings]], yes: bool) -> None:
    """Show the impact of every change of scope in `changes` ((stored or None, new) pairs),
    then ask once whether to save them all; exit 1 when declined or not confirmable."""
    asks = [q for q in (preview_change(b, a) for b, a in changes) if q is not None]
    if not asks or yes:
        return
    what = ", ".join(q.what for q in asks)
    if not sys.stdin.isatty():
        err_console.print(
            f"[bold red]error:[/] not saved: {escape(what)} needs confirmation and there is no "
            "terminal to ask on; nothing was written. Pass --yes to save it from a script.",
            soft_wrap=True,
        )
        raise SystemExit(EXIT_FAILED)
    if not click.confirm(f"Save {what}?", default=False):
        console.print("Not saved: nothing was written.")
        raise SystemExit(EXIT_FAILED)
