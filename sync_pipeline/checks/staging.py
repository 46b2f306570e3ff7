"""The staging suites: users, groups and memberships as the extraction staged them, against
the counts it recorded."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import sqlalchemy as sa

from sync_pipeline.checks.frames import load
from sync_pipeline.checks.gxrun import validate
from sync_pipeline.checks.outcome import Outcome
from sync_pipeline.checks.scope import Scope
from sync_pipeline.core import db

# Directory objects Graph lists as group members that we do not stage, and that are fine.
OTHER_MEMBER_TYPES = ("orgContact", "device", "servicePrincipal")


def _extracted(conn: sa.Connection, tenant: str) -> dict[str, int]:
    rows = conn.execute(db.q("checks/extracted_counts"), {"tenant": tenant}).all()
    return {entity: int(n) for entity, n in rows}


def _with_count(outcome: Outcome, extracted: int | None) -> Outcome:
    outcome.facts |= {"rows_staged": outcome.rows, "rows_extracted": extracted}
    return outcome


# -- the suites, one function per asset ---------------------------------------------------------


def check_staging_users(conn: sa.Connection, tenant: str, scope: Scope | None = None) -> Outcome:
    """staging.users: ids, userPrincipalName, accountEnabled, and the extraction's count.

    Daily (`scope` not whole): the users the extraction wrote, and the count of every staged
    user (an index-only count) against the extraction's."""
    extracted = _extracted(conn, tenant).get("users")
    if scope is None or scope.whole:
        frame = load(conn, "staging_users", {"tenant": tenant, "changed_only": False})
        params = {"extracted_rows": len(frame) if extracted is None else extracted}
        outcome = _with_count(validate("staging_users", frame, params), extracted)
    else:
        frame = load(conn, "staging_users", {"tenant": tenant, "changed_only": True})
        # the frame is the changed rows: its own length; the count is checked whole below
        outcome = validate("staging_users", frame, {"extracted_rows": len(frame)})
        staged = int(
            conn.execute(db.q("checks/staged_users_count"), {"tenant": tenant}).scalar_one()
        )
        _add_count(outcome, staged, extracted, "staging_row_count")
    if scope is not None:
        outcome.facts |= scope.facts()
    return outcome


def _add_count(outcome: Outcome, staged: int, extracted: int | None, suite: str) -> None:
    """A one-row suite (`suite`): staged rows = rows the extraction counted."""
    count = pd.DataFrame(
        [{"staged": staged, "extracted": staged if extracted is None else extracted}]
    )
    counted = validate(suite, count)
    outcome.evaluated += counted.evaluated
    outcome.failures += counted.failures
    outcome.seconds = round(outcome.seconds + counted.seconds, 3)
    outcome.facts |= {"rows_staged": staged, "rows_extracted": extracted}


def check_staging_groups(conn: sa.Connection, tenant: str) -> Outcome:
    """staging.groups: ids, and the extraction's count."""
    extracted = _extracted(conn, tenant).get("groups")
    frame = load(conn, "staging_groups", {"tenant": tenant})
    params = {"extracted_rows": len(frame) if extracted is None else extracted}
    return _with_count(validate("staging_groups", frame, params), extracted)


def check_staging_members(conn: sa.Connection, tenant: str, scope: Scope | None = None) -> Outcome:
    """staging.group_members: known groups and members, and the extraction's count.

    Daily (`scope` not whole): the groups whose members the extraction wrote and the groups
    of the users it wrote; the membership count is whole."""
    extracted = _extracted(conn, tenant).get("group_members")
    if scope is not None and not scope.whole:
        params = {"tenant": tenant}
        if conn.execute(db.q("checks/scope/many_groups_touched"), params).scalar():
            scope = replace(scope, whole=True, reason="many_groups_touched")
    whole = scope is None or scope.whole
    frame = load(
        conn,
        "staging_members" if whole else "staging_members_changed",
        {"tenant": tenant, "other_types": list(OTHER_MEMBER_TYPES)},
    )
    if len(frame):
        staged = int(frame["memberships_staged"].iloc[0])
    elif whole:
        staged = 0
    else:
        staged = int(
            conn.execute(db.q("checks/staged_members_count"), {"tenant": tenant}).scalar_one()
        )
    outcome = validate("staging_members", frame.drop(columns="memberships_staged"))
    _add_count(outcome, staged, extracted, "staging_member_count")
    if scope is not None:
        outcome.facts |= scope.facts()
    return outcome
