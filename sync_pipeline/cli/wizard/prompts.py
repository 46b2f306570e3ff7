"""How the setup wizard asks: prompts that understand `back`, yes/no questions, and the
tenant's groups shown as a numbered table to choose from by number, id or name.

Only click.prompt reads input, so a script can pipe the answers on stdin.
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from sync_pipeline.cli.common import console

MAX_SHOWN = 200
BACK_WORDS = frozenset({"back", "<"})
SKIPPED = "skipped"  # what a step returns when it asks nothing (groups not imported)


class Back(Exception):
    """The admin typed `back` at a prompt: the wizard returns to the previous step."""


class Paused(Exception):
    """The admin chose to stop here and resume later."""


class _Backable(click.ParamType):
    """The prompt's own type, except that `back` or `<` means "the previous step"."""

    def __init__(self, inner: click.ParamType) -> None:
        self.inner = inner
        self.name = inner.name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in BACK_WORDS:
            return Back
        return self.inner.convert(value, param, ctx)


def prompt(text: str, type: Any = None, default: Any = None, **options: Any) -> Any:
    """click.prompt that raises Back on `back` / `<`."""
    inner = click.types.convert_type(type, default)
    if isinstance(inner, click.Choice):  # click shows choices only for its own Choice type
        text = f"{text} ({', '.join(map(str, inner.choices))})"
    value = click.prompt(text, type=_Backable(inner), default=default, **options)
    if value is Back:
        raise Back
    return value


def confirm(text: str, default: bool) -> bool:
    """click.confirm's look ([Y/n]) with `back` understood."""
    hint = "[Y/n]" if default else "[y/N]"
    return bool(
        prompt(
            f"{text} {hint}", type=click.BOOL, default="y" if default else "n", show_default=False
        )
    )


def kind_of(group: dict[str, Any]) -> str:
    """The group's kind from Graph's three fields, as the transform decides it."""
    if "Unified" in (group.get("groupTypes") or []):
        return "microsoft365"
    if group.get("securityEnabled"):
        return "mail-enabled security" if group.get("mailEnabled") else "security"
    return "distribution list" if group.get("mailEnabled") else "other"


def show_groups(groups: list[dict[str, Any]], title: str) -> None:
    """The first MAX_SHOWN groups, numbered, with their kind and id."""
    table = Table("#", "group", "kind", title=title)
    table.add_column("id", overflow="fold", min_width=36)
    for n, g in enumerate(groups[:MAX_SHOWN], start=1):
        table.add_row(str(n), g.get("displayName") or "", kind_of(g), g["id"])
    console.print(table)
    if len(groups) > MAX_SHOWN:
        console.print(f"… and {len(groups) - MAX_SHOWN} more: type their name or id")


def pick(raw: str, shown: list[dict[str, Any]]) -> list[str]:
    """Group ids from numbers (of the list shown), ids or exact names, comma-separated."""
    by_id = {g["id"] for g in shown}
    chosen: list[str] = []
    for token in (t.strip() for t in raw.split(",")):
        if not token:
            continue
        if token.isdigit() and 1 <= int(token) <= min(len(shown), MAX_SHOWN):
            gid = shown[int(token) - 1]["id"]
        elif token in by_id:
            gid = token
        else:
            named = [
                g["id"] for g in shown if (g.get("displayName") or "").lower() == token.lower()
            ]
            if len(named) != 1:
                problem = "matches several groups" if named else "is no group shown"
                raise ValueError(f"{token!r} {problem}; use its number or id")
            gid = named[0]
        if gid not in chosen:
            chosen.append(gid)
    return chosen
