"""Quarantine: a tenant whose last N real syncs all failed is skipped by the daily schedule.

N is SYNC_PIPELINE_QUARANTINE_AFTER (default 3), as Entra ID provisioning quarantines a job
that keeps failing. Test syncs (dry runs) neither count nor lift it. A successful sync,
typically a manual one after the fix, lifts it: there is nothing to reset by hand. The
tenant's admin is told once, when the tenant enters it, not at every skipped tick.
"""

from __future__ import annotations

import sqlalchemy as sa

from sync_pipeline.core import config, db


def quarantine_after() -> int:
    """Consecutive failed syncs after which the schedule skips a tenant
    (SYNC_PIPELINE_QUARANTINE_AFTER)."""
    return config.quarantine_after()


def quarantined(conn: sa.Connection) -> dict[str, str]:
    """The quarantined tenants, each with the error of its last failed sync."""
    rows = conn.execute(db.q("runs/quarantined"), {"failures": quarantine_after()})
    return {r.tenant: r.last_error or "" for r in rows}


def consecutive_failures(conn: sa.Connection, tenant: str) -> int:
    """How many of the tenant's latest real syncs failed in a row (0 after a success)."""
    return int(conn.execute(db.q("runs/consecutive_failures"), {"tenant": tenant}).scalar_one())


def entered(conn: sa.Connection, tenant: str) -> int | None:
    """After a real sync of the tenant failed: the failures in a row when that failure put the
    tenant in quarantine, else None. Exactly at entry, so the admin gets one notice, not one
    per skipped tick."""
    failures = consecutive_failures(conn, tenant)
    return failures if failures == quarantine_after() else None
