"""The outbox in tests: a tenant's events, each validated against the published schema."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import sqlalchemy as sa

from sync_pipeline.outbox import events as outbox

SCHEMA = json.loads((resources.files("sync_pipeline.outbox") / "events.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def validate(event: dict[str, Any]) -> dict[str, Any]:
    """The event, after checking it against sync_pipeline/outbox/events.schema.json."""
    _VALIDATOR.validate(event)
    return event


def events(engine: sa.Engine, tenant: str, after: int = 0) -> list[dict[str, Any]]:
    """The tenant's events after `after`, as consumers get them, every one validated."""
    with engine.connect() as conn:
        found = outbox.read(conn, tenant, after, limit=100_000)
    # through JSON and back, as the CLI and the webhook hand them over
    return [validate(json.loads(json.dumps(e))) for e in found]


def last_id(engine: sa.Engine, tenant: str) -> int:
    found = events(engine, tenant)
    return found[-1]["id"] if found else 0


def by_type(found: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in found:
        out.setdefault(e["type"], []).append(e)
    return out
