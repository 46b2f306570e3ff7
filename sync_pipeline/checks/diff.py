"""The diff suites: the deactivation safety limit (with the load's own numbers) and no
update that blanks an address or a name."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from sync_pipeline.checks.frames import load
from sync_pipeline.checks.gxrun import validate
from sync_pipeline.checks.outcome import Outcome
from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.load import diff


def diff_run_id(conn: sa.Connection, tenant: str, dagster_run_id: str) -> int | None:
    """This Dagster run's sync.runs id, else the tenant's latest run with a diff."""
    params = {"tenant": tenant, "dagster_run_id": dagster_run_id}
    return conn.execute(db.q("checks/diff_run"), params).scalar_one_or_none()


def check_diff_safety(
    conn: sa.Connection, settings: TenantSettings, run_id: int, *, guard: bool
) -> Outcome:
    """The run's deactivations against the tenant's safety limit, with the load's numbers
    (`diff.safety_check`). `guard=False` (a test sync, or an operator-allowed mass
    deactivation) reports an excess as WARN instead of blocking."""
    params = {"tenant": settings.slug, "run_id": run_id}
    deactivations = int(conn.execute(db.q("checks/diff_deactivations"), params).scalar_one())
    active = int(conn.execute(db.q("load/active_users"), params).scalar_one())
    counts = {"user_deactivate": deactivations, "active_users": active}
    exceeded, message = diff.safety_check(counts, settings)
    frame = pd.DataFrame(
        [
            {
                "deactivations": deactivations,
                "active_users": active,
                # the load's rule: no percentage limit before there are active users
                "deactivation_percent": 100.0 * deactivations / active if active else 0.0,
            }
        ]
    )
    limits = {
        "max_deactivations": settings.max_deactivations,
        "max_deactivation_percent": settings.max_deactivation_percent,
    }
    outcome = validate("diff_safety", frame, limits, strict=guard)
    outcome.facts |= {"sync_run_id": run_id, "safety": message, "over_safety_limit": exceeded}
    return outcome


def check_diff_fields(conn: sa.Connection, tenant: str, run_id: int) -> Outcome:
    """No update, adoption, reactivation or rename writes an empty address or name."""
    frame = load(conn, "diff_field_changes", {"tenant": tenant, "run_id": run_id})
    outcome = validate("diff_fields", frame)
    outcome.facts["sync_run_id"] = run_id
    return outcome


def check_diff_held(conn: sa.Connection, tenant: str, run_id: int) -> Outcome:
    """Advisory: what the gate holds for a person's decision (load/gate.py), with how long it
    has been held; red while anything has waited for more than a day."""
    frame = load(conn, "diff_held", {"tenant": tenant, "run_id": run_id})
    outcome = validate("diff_held", frame)
    outcome.facts |= {
        "sync_run_id": run_id,
        "held": len(frame),
        "held_longest_hours": round(float(frame["held_hours"].max()), 1) if len(frame) else 0.0,
    }
    return outcome
