"""How much of a tenant's rows a check validates: the rows that changed, or all of them.

A daily check validates the rows its stage changed (the staging keys the extraction wrote,
`sync.touched`; the snapshot users rewritten since the last apply, `sync.diff_dirty`) plus
aggregates over every row that the database answers from an index (row counts, addresses
held twice). Every check validates its rows whole, as before, when it never has for the
tenant, when its last whole pass is older than the tenant's `full_verification_days`, after
a full read (staging), and after a full rebuild of the snapshot (snapshot). A whole pass
that finds nothing wrong is recorded (`sync.verifications`, migration 016); its time and age
go into the check's metadata, so the UI shows when each tenant was last verified whole.
No Dagster imports.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings

# Asked for explicitly (tests, `sync-pipeline` commands that verify): every check whole.
WHOLE_ALWAYS = False


@dataclass(frozen=True)
class Scope:
    """One check's extent on one run."""

    check_name: str
    whole: bool
    reason: str  # why whole: never_verified | due | full_read | full_rebuild | asked ("" daily)
    verified_at: dt.datetime | None  # the last whole pass before this one
    timezone: str

    def facts(self) -> dict[str, Any]:
        """Metadata: the extent, why, and the last whole pass in the tenant's zone and age."""
        facts: dict[str, Any] = {
            "verification": "whole" if self.whole else "changed rows",
            "verification_reason": self.reason or "daily",
        }
        if self.verified_at is None:
            facts["last_whole_verification"] = "never"
        else:
            local = self.verified_at.astimezone(ZoneInfo(self.timezone))
            facts["last_whole_verification"] = local.strftime("%Y-%m-%d %H:%M %Z")
            age = dt.datetime.now(dt.UTC) - self.verified_at
            facts["whole_verification_age_hours"] = round(age.total_seconds() / 3600, 2)
        return facts


def decide(conn: sa.Connection, settings: TenantSettings, check_name: str, stage: str) -> Scope:
    """The extent of `check_name` (stage: staging | snapshot; verify: the transform's and the
    diff's comparison of their incremental paths with a whole rebuild) for this run."""
    row = conn.execute(
        db.q("checks/scope/read"), {"tenant": settings.slug, "check_name": check_name}
    ).one()
    due = dt.timedelta(days=settings.full_verification_days)
    if WHOLE_ALWAYS:
        reason = "asked"
    elif row.verified_at is None:
        reason = "never_verified"
    elif dt.datetime.now(dt.UTC) - row.verified_at >= due:
        reason = "due"
    elif stage == "staging" and row.full_read:
        reason = "full_read"
    elif stage == "snapshot" and row.snapshot_path != "incremental":
        reason = "full_rebuild"
    else:
        reason = ""
    return Scope(check_name, bool(reason), reason, row.verified_at, settings.timezone)


def record(
    conn: sa.Connection, tenant: str, scope: Scope, passed: bool, *, commit: bool = True
) -> None:
    """Remember a whole pass that found nothing wrong (committed at once unless the caller's
    transaction is to carry it)."""
    if scope.whole and passed:
        conn.execute(
            db.q("checks/scope/record"), {"tenant": tenant, "check_name": scope.check_name}
        )
        if commit:
            conn.commit()
