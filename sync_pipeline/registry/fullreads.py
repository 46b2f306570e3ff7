"""When each tenant's directory was last read in full (sync.full_reads, migration 020).

The extraction records it, in its own transaction, whenever users and groups were both read
whole; the schedule reads it to know whose daily sync is due to be a full read. No Dagster
imports here.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from sync_pipeline.core import db


def last_full_reads(conn: sa.Connection) -> dict[str, dt.datetime]:
    """{tenant: when its last full read started}; a tenant never read in full is absent."""
    return {str(t): at for t, at in conn.execute(db.q("runs/full_reads"))}
