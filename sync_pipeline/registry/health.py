"""The health sensor's state: when each tenant was last examined (graph/health.py) and which
expiry alerts were sent, so that each tenant is examined about daily and each alert sent once."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.graph import health

EXAMINE_EVERY = dt.timedelta(hours=24)


def due(
    conn: sa.Connection, now: dt.datetime, limit: int, only: list[str] | None = None
) -> list[str]:
    """Up to `limit` tenants (of `only`, when given) not examined for EXAMINE_EVERY, the
    longest waiting first."""
    params = {"since": now - EXAMINE_EVERY, "n": limit, "only": only}
    rows = conn.execute(db.q("health/due"), params)
    return list(rows.scalars())


def record(
    conn: sa.Connection, tenant: str, now: dt.datetime, findings: list[health.Finding]
) -> None:
    doc = [{"check": f.check, "status": f.status, "detail": f.detail} for f in findings]
    conn.execute(
        db.q("health/record"),
        {
            "tenant": tenant,
            "at": now,
            "status": health.worst(findings),
            "findings": json.dumps(doc),
        },
    )


def threshold(finding: health.Finding, now: dt.datetime) -> int | None:
    """The alert threshold an expiring credential has crossed: 30, 14 or 7 days before, or 0
    once expired; None when it is further off (or has no expiry)."""
    if finding.expires_at is None or finding.credential is None:
        return None
    days = (finding.expires_at - now).total_seconds() / 86400
    if days <= 0:
        return 0
    crossed = [t for t in health.ALERT_DAYS if days <= t]
    return min(crossed) if crossed else None


def alert_once(conn: sa.Connection, tenant: str, finding: health.Finding, days: int) -> bool:
    """Record the alert for this credential, expiry and threshold; False when already sent."""
    row = conn.execute(
        db.q("health/alert_once"),
        {
            "tenant": tenant,
            "credential": finding.credential,
            "expires_at": finding.expires_at,
            "days": days,
        },
    ).first()
    return row is not None
