"""Shared CLI pieces: the console, error handling with exit codes, environment preparation."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from sync_pipeline.db import DatabaseError
from sync_pipeline.graph import CredentialError
from sync_pipeline.settings import SettingsError
from sync_pipeline.tenants import UnknownTenantError

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)


def handle_errors(fn: F) -> F:
    """Turn the project's expected errors into one clear line and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SettingsError, UnknownTenantError, CredentialError) as exc:
            fail(str(exc).strip("'\""), EXIT_BAD_INPUT)
        except DatabaseError as exc:
            fail(str(exc), EXIT_FAILED)
        except click.ClickException:
            raise

    return wrapper  # type: ignore[return-value]


def prepare() -> str:
    from sync_pipeline import environment

    with err_console.status("Preparing the database…"):
        return environment.prepare()
