"""Outlook's concurrency limit: at most 4 requests of an app at once, whichever mailboxes
they read, and a `$batch` of Outlook requests runs 4 of them at a time
(throttling-limits.md, "Outlook service limits"). Here the Outlook requests are those under
`/users/{id}/mailboxSettings` (userPurpose among them).

The fake answers one request at a time under its lock, so "at once" is counted from a
request's arrival (before the latency the server adds) to its answer, and decided at the
arrival: a request is admitted when the admitted Outlook requests of the same app still in
flight, plus itself, hold at most 4 slots (a plain request holds 1, a batch min(4, its
Outlook items)); otherwise its Outlook items are answered 429 `ApplicationThrottled` with a
Retry-After (Exchange's "MailboxConcurrency" refusal), and a batch holding them 424 overall
(batch.py). Those already running always finish, so clients that retry make progress.
The 10,000 requests per 10 minutes per app and mailbox are not counted (a sync reads each
mailbox once).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sync_pipeline.fakegraph.base import _FakeBase
from sync_pipeline.fakegraph.wire import GraphError

CONCURRENCY = 4
_MARK = "/mailboxSettings"


def is_outlook(path: str) -> bool:
    return path.startswith(("/users/", "/v1.0/users/", "/me/")) and _MARK in path


def outlook_slots(method: str, path: str, body: bytes) -> int:
    """The Outlook slots a request holds while in flight (0: not an Outlook request)."""
    if path.endswith("/$batch") and method == "POST":
        if _MARK.encode() not in body:
            return 0
        try:
            items = json.loads(body).get("requests") or []
            count = sum(1 for i in items if isinstance(i, dict) and _MARK in str(i.get("url")))
        except (ValueError, AttributeError):
            return 0
        return min(CONCURRENCY, count)
    return 1 if is_outlook(path) else 0


class _Outlook(_FakeBase):
    """Outlook requests in flight per app, and the 429 above CONCURRENCY."""

    def outlook_enter(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> int | None:
        """Count an arriving request in (its arrival number), or None if it is no Outlook one
        or carries no token of ours (it fails sign-in anyway)."""
        slots = outlook_slots(method, path, body)
        if not slots:
            return None
        scheme, _, raw = headers.get("authorization", "").partition(" ")
        record = self._tokens.get(raw.strip()) if scheme.lower() == "bearer" else None
        if record is None:
            return None
        with self._outlook_lock:
            busy = sum(
                held for app, held in self._outlook_inflight.values() if app == record.client_id
            )
            self._outlook_seq += 1
            if busy + slots <= CONCURRENCY:
                self._outlook_inflight[self._outlook_seq] = (record.client_id, slots)
            else:
                self._outlook_refused.add(self._outlook_seq)
            return self._outlook_seq

    def outlook_leave(self, arrival: int | None) -> None:
        if arrival is not None:
            with self._outlook_lock:
                self._outlook_inflight.pop(arrival, None)
                self._outlook_refused.discard(arrival)

    def _outlook_admit(self, path: str) -> None:
        """Raise the 429 when the request being answered is over the app's concurrency."""
        arrival = self._outlook_current
        if arrival is None or not is_outlook(path):
            return
        with self._outlook_lock:
            refused = arrival in self._outlook_refused
        if refused:
            self._stats["throttled"] += 1
            self._stats["throttled_outlook_concurrency"] += 1
            raise GraphError(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                {"Retry-After": f"{self.outlook_retry_after:g}"},
            )
