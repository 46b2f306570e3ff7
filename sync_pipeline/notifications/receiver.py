"""The receiver of Graph change notifications: a small Starlette (ASGI) app, served by uvicorn
(`sync-pipeline notifications serve`).

What Microsoft's docs ask of it (concepts/change-notifications-delivery-webhooks.md,
change-notifications-lifecycle-events.md):

- the validation request, a POST to the URL with `?validationToken=...`, is answered within
  10 s with 200, `text/plain` and the decoded token;
- each notification's `clientState` must be the subscription's secret: a mismatch (or an
  unknown subscription) is not acted on, and is counted per tenant;
- a notification is persisted and answered 202 at once (Graph waits 3 s, then retries for up
  to 4 hours); when it could not be persisted the answer is a 5xx, so that Graph retries.

A valid change notification marks its tenant dirty (the trigger sensor then requests one
incremental sync); lifecycle events are recorded on the subscription (`subscriptionRemoved`
and `reauthorizationRequired` for the subscriptions sensor) and `missed` marks the tenant
dirty too. Nothing a notification says about the change is used: the delta read decides.
The clientState is never logged, stored or answered.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sync_pipeline.notifications import state

log = logging.getLogger(__name__)

MAX_BODY = 1_000_000  # bytes: Graph batches notifications, but never into megabytes
LIFECYCLE_EVENTS = ("subscriptionRemoved", "reauthorizationRequired", "missed")


def record(conn: sa.Connection, items: list[Any], now: dt.datetime) -> tuple[int, int]:
    """Record one POST's notifications in the caller's transaction; (accepted, rejected)."""
    accepted = rejected = 0
    dirty: dict[str, tuple[int, str]] = {}
    for item in items:
        sub_id = item.get("subscriptionId") if isinstance(item, dict) else None
        tenant = None
        if isinstance(sub_id, str):
            tenant = state.owner(conn, sub_id, item.get("clientState"))
        if tenant is None or not isinstance(sub_id, str):
            rejected += 1
            known = state.tenant_of(conn, sub_id) if isinstance(sub_id, str) else ""
            state.count(conn, known, state.REJECTED, now)
            log.warning(
                "notification rejected: clientState mismatch or unknown subscription %r",
                sub_id if isinstance(sub_id, str) else None,
            )
            continue
        accepted += 1
        event = item.get("lifecycleEvent")
        if event is not None:
            event = str(event) if event in LIFECYCLE_EVENTS else "unknown"
            state.count(conn, tenant, f"lifecycle:{event}", now)
            if event in ("subscriptionRemoved", "reauthorizationRequired"):
                state.record_lifecycle(conn, sub_id, event, now)
            if event == "missed":
                n, _ = dirty.get(tenant, (0, ""))
                dirty[tenant] = (n + 1, "missed")
            continue
        state.count(conn, tenant, state.ACCEPTED, now)
        n, reason = dirty.get(tenant, (0, "notification"))
        dirty[tenant] = (n + 1, reason)
    for tenant, (n, reason) in sorted(dirty.items()):
        state.mark_dirty(conn, tenant, now, reason, n)
    return accepted, rejected


def build_app(engine: Callable[[], sa.Engine]) -> Starlette:
    """The receiver; `engine` gives the database (called per request: the CLI's default
    engine, or a test's)."""

    def persist(items: list[Any]) -> tuple[int, int]:
        with engine().begin() as conn:
            return record(conn, items, dt.datetime.now(dt.UTC))

    async def notifications(request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            # the handshake: the token as Graph sent it, decoded, in plain text
            return PlainTextResponse(token, status_code=200)
        body = b""
        async for chunk in request.stream():  # never more than MAX_BODY held
            body += chunk
            if len(body) > MAX_BODY:
                return PlainTextResponse("too large", status_code=413)
        try:
            payload = json.loads(body)
        except ValueError:
            return PlainTextResponse("not JSON", status_code=400)
        items = payload.get("value") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            return PlainTextResponse("no notifications", status_code=400)
        try:
            accepted, _ = await run_in_threadpool(persist, items)
        except sa.exc.SQLAlchemyError as exc:
            log.error("notifications not recorded (Graph will retry): %s", type(exc).__name__)
            return PlainTextResponse("not recorded", status_code=503)
        if not accepted:
            return PlainTextResponse("rejected", status_code=403)
        return Response(status_code=202)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/{path:path}", notifications, methods=["POST"]),
        ]
    )
