"""The `--help` of every command and subcommand, compared with a committed snapshot.

The CLI's help is part of its interface: a refactor must leave it exactly as it was, and a
change to it shows up here as a diff to review. The command tree is walked in-process, so a
new command is snapshotted without being listed here.

Refresh the snapshot after an intended change (the test never writes unless asked):

    SYNC_PIPELINE_UPDATE_SNAPSHOTS=1 pytest sync_pipeline_tests/test_cli_help.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from sync_pipeline.cli import main

SNAPSHOT = Path(__file__).parent / "snapshots" / "cli_help.txt"
PROG = "sync-pipeline"
# What a terminal of 100 columns shows (click caps the help at 80 columns wider than that).
ENV = {"COLUMNS": "100", "LINES": "40"}


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1] if path else PROG)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from _commands(sub, (*path, name))


def render() -> str:
    """Every command's help, one section each, in the tree's order."""
    runner = CliRunner(env=ENV)
    sections = []
    for path in _commands(main):
        result = runner.invoke(main, [*path, "--help"], prog_name=PROG, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        sections.append(f"=== {' '.join((PROG, *path))} ===\n{result.output.rstrip()}\n")
    return "\n".join(sections)


def test_help_is_unchanged() -> None:
    text = render()
    if os.environ.get("SYNC_PIPELINE_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert SNAPSHOT.is_file(), (
        f"no snapshot at {SNAPSHOT}; write it with SYNC_PIPELINE_UPDATE_SNAPSHOTS=1"
    )
    expected = SNAPSHOT.read_text(encoding="utf-8")
    assert text == expected, (
        "the CLI's --help changed; if that is intended, refresh the snapshot with "
        "SYNC_PIPELINE_UPDATE_SNAPSHOTS=1 pytest sync_pipeline_tests/test_cli_help.py"
    )
