"""Shared CLI pieces: the console, error handling with exit codes, the GUID parameter type,
environment preparation."""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from sync_pipeline.core import db
from sync_pipeline.core.db import DatabaseError, DatabaseURLError
from sync_pipeline.core.settings import SettingsError
from sync_pipeline.core.textfiles import inert
from sync_pipeline.graph import CredentialError
from sync_pipeline.registry import tenants
from sync_pipeline.registry.tenants import UnknownTenantError

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Options:
    """The top-level options every command may consult."""

    verbose: bool = False  # -v: Dagster's own log lines too
    exit_at_once: bool = False  # the command is done: leave without interpreter teardown


options = Options()


def shown(text: object) -> str:
    """`inert` text, escaped for rich markup: a display name "[/]" or "[bold]" is printed as
    written, never read as markup (which crashed explain and history)."""
    return escape(inert(text))


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    # Shown, not printed: a message may hold [brackets] (a YAML list) or a hostile name that
    # rich would read as markup; soft-wrapped: one line however narrow the terminal, so it
    # can be grepped and copied.
    err_console.print(f"[bold red]error:[/] {shown(message)}", soft_wrap=True)
    sys.exit(code)


def message_of(exc: BaseException) -> str:
    """The error's own words, quotes kept (a message may end on a quoted value). Only a
    KeyError's str() adds quotes of its own (its repr); its argument is the message."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn the project's expected errors into one clear line and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (SettingsError, UnknownTenantError, CredentialError, DatabaseURLError) as exc:
            fail(message_of(exc), EXIT_BAD_INPUT)
        except DatabaseError as exc:
            fail(str(exc), EXIT_FAILED)
        except click.ClickException:
            raise

    return wrapper


class Guid(click.ParamType):
    """A GUID, normalised; prompts re-ask until one is given."""

    name = "guid"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            return str(uuid.UUID(str(value).strip()))
        except ValueError:
            self.fail(f"{value!r} is not a GUID such as 00000000-0000-0000-0000-000000000000")


def prepare() -> str:
    """Start or find the database, migrate it, point Dagster at it; returns the database URL.
    On this machine's embedded server the demo tenant is registered on first use."""
    from sync_pipeline.core import environment

    with err_console.status("Preparing the database…"):
        prepared = environment.prepare()
        if prepared.embedded:
            with db.engine().begin() as conn:
                tenants.ensure_demo(conn)
        return prepared.url
