"""Mailbox types (setting `exclude_mailbox_types`): each person's
`mailboxSettings/userPurpose` read into staging.user_purposes (migration 024).

Only while the setting names a type, and only for the people who are due: without a stored
purpose (new, or never asked), or whose staged row changed since it was read (its
fingerprint, `staging.purpose_fingerprint`). So the first read asks for everyone, and a daily
sync over an unchanged directory asks for nobody. A person Graph has no mailbox for (404,
`MailboxNotEnabledForRESTAPI`) is stored as unreadable: kept in the sync (the transform
excludes only by a purpose it knows), counted, and not asked again until their row changes.

Runs after the directory is staged, in the extraction's transaction: a failure rolls the
whole read back. One `$batch` at a time (pager.purposes_batch). No Dagster here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.extract import pager
from sync_pipeline.graph.client import GraphClient

SAVE_EVERY = 500  # purposes written per statement


def read_purposes(
    client: GraphClient,
    conn: sa.Connection,
    tenant: str,
    on_batch: Callable[[], None] | None = None,
    *,
    only: list[str] | None = None,
) -> Counter[str]:
    """Ask Graph for the due people's mailbox types and stage them; returns the counts for
    the metadata: `asked` (requests, one per person), `read`, `unreadable` (404),
    `skipped_known` (current, not asked), and `type_<purpose>` for what was read.
    `only`: just these people, if due (a run of one person); nobody else is touched."""
    counts: Counter[str] = Counter()
    due = [row[0] for row in conn.execute(db.q("extract/purposes_due"), {"t": tenant})]
    if only is not None:
        wanted = set(only)
        due = [uid for uid in due if uid in wanted]
    else:
        conn.execute(db.q("extract/purposes_forget"), {"t": tenant})
        for row in conn.execute(db.q("extract/purposes_known"), {"t": tenant}):
            counts["skipped_known"] += int(row.n)
    pending: list[tuple[str, str | None, str | None]] = []
    for ids in pager.chunks(due):
        answers = pager.purposes_batch(client, ids)
        counts["asked"] += len(ids)
        counts["batches"] += 1
        for _, purpose, _code in answers:
            counts["read" if purpose else "unreadable"] += 1
            if purpose:
                counts[f"type_{purpose}"] += 1
        pending.extend(answers)
        if len(pending) >= SAVE_EVERY:
            _save(conn, tenant, pending)
            pending = []
        if on_batch is not None:
            on_batch()
    if pending:
        _save(conn, tenant, pending)
    return counts


def _save(
    conn: sa.Connection, tenant: str, answers: list[tuple[str, str | None, str | None]]
) -> None:
    conn.execute(
        db.q("extract/purposes_save"),
        {
            "t": tenant,
            "ids": [a[0] for a in answers],
            "purposes": [a[1] for a in answers],
            "statuses": ["read" if a[1] else "unreadable" for a in answers],
            "codes": [a[2] for a in answers],
        },
    )
