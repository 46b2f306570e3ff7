"""`sync-pipeline events TENANT --after ID [--follow]`: the outbox as JSON lines."""

from __future__ import annotations

import json
import sys

import click
import sqlalchemy as sa

from sync_pipeline.cli.common import EXIT_INTERRUPTED, fail, handle_errors, prepare
from sync_pipeline.core import db
from sync_pipeline.outbox import events as outbox
from sync_pipeline.registry import tenants

_PAGE = 1000


@click.command("events")
@click.argument("tenant")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="ID",
    help="Only events with a larger id: the last id you processed (your cursor).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they commit.")
@click.option(
    "--poll",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="With --follow: read at least this often even without a notification.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="Without --follow: print at most this many events.",
)
@handle_errors
def events_command(tenant: str, after: int, follow: bool, poll: float, limit: int | None) -> None:
    """Print TENANT's outbox events (joiner, leaver, mover, address_changed, group_created,
    group_removed) with an id above --after, oldest first, one JSON object a line, as
    sync_pipeline/outbox/events.schema.json describes them (docs/architecture.md).

    Keep the last `id` you processed and pass it as --after next time; an event seen twice
    (after a crash between processing and saving the id) has the same id. With --follow the
    command waits for new events, woken by the commit's NOTIFY on the channel
    sync_pipeline_events and reading every --poll seconds anyway, until Ctrl-C.

    Exit codes: 0 printed (without --follow), 1 the database could not be reached, 2 bad
    input (an unknown tenant), 130 --follow stopped by Ctrl-C.
    """
    prepare()
    engine = db.engine()
    with engine.connect() as conn:
        tenants.get(conn, tenant)  # an unknown tenant is bad input
    try:
        if follow:
            for event in outbox.follow(engine, tenant, after, poll_seconds=poll):
                _line(event)
        else:
            _print_pages(engine, tenant, after, limit)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()
        sys.exit(0)
    except OSError as exc:
        fail(f"tenant {tenant}: events: {exc}", 1)


def _print_pages(engine: sa.Engine, tenant: str, after: int, limit: int | None) -> None:
    """Every event after the cursor (at most `limit`), a page at a time: a first load's
    100k joiners are never held in memory at once."""
    left = limit if limit is not None else -1
    while left != 0:
        page = _PAGE if left < 0 else min(left, _PAGE)
        with engine.connect() as conn:
            found = outbox.read(conn, tenant, after, page)
        for event in found:
            _line(event)
        if len(found) < page:
            return
        after, left = found[-1]["id"], left - len(found) if left > 0 else -1


def _line(event: dict) -> None:
    click.echo(json.dumps(event, ensure_ascii=False, default=str))
    sys.stdout.flush()
