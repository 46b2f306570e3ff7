"""Snapshot vs app: the planned changes (sync.diffs), their set-wise apply, the safety limit.

`compute_diff` writes what a sync would change; a test sync reports exactly those rows and a
sync applies exactly them (`apply_diff`), so what the admin saw is what happens. All work is
set-wise SQL in `sql/load/*.sql`. No Dagster imports.

Ownership, in short: the sync manages users it created or adopted (source `m365`), groups it
created (source `m365`) and memberships with source `m365`; rows a person made in the app are
never changed, except that an active manual user with a synced address is adopted once.
"""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.registry import runs
from sync_pipeline.transform.rules import run_script

log = logging.getLogger(__name__)

ACTIONS = {
    "user": ("create", "adopt", "update", "reactivate", "deactivate"),
    "group": ("create", "rename", "restore", "remove"),
    "membership": ("add", "remove"),
    "manager": ("set",),
}
COUNT_KEYS = tuple(f"{entity}_{action}" for entity, acts in ACTIONS.items() for action in acts)

# Apply order: free addresses and drop stale rows first, so that the active-email unique index
# never trips in the ordinary cases (a leaver's address reused by a newcomer), then change and
# create users and groups (new users with their managers), then managers and memberships,
# which need the new ids; memberships last, each recorded with its insert.
_APPLY_STEPS: tuple[tuple[str, str, str | None], ...] = (
    ("user_deactivate", "load/apply_user_deactivate", None),
    ("membership_remove", "load/apply_membership_remove", None),
    ("group_remove", "load/apply_group_remove", None),
    # not a change of its own: the addresses of users about to get another one are parked,
    # so that users trading addresses in one sync never hold the same one at once
    ("_address_release", "load/apply_address_release", None),
    ("user_update", "load/apply_user_change", "update"),
    ("user_adopt", "load/apply_user_change", "adopt"),
    ("user_reactivate", "load/apply_user_change", "reactivate"),
    ("user_create", "load/apply_user_create", None),
    ("group_create", "load/apply_group_create", None),
    ("group_restore", "load/apply_group_change", "restore"),
    ("group_rename", "load/apply_group_change", "rename"),
    ("manager_set", "load/apply_manager_set", None),
    # the audit of all the above; membership adds record their own rows, with their apply
    ("_record", "audit/record", None),
    ("membership_add", "load/apply_membership_add_new_groups", None),
    ("membership_add", "load/apply_membership_add", None),
)


def compute_diff(
    conn: sa.Connection, tenant: str, run_id: int, settings: TenantSettings
) -> dict[str, int]:
    """Replace run_id's sync.diffs rows with the changes that make app.* match the snapshot.

    Returns counts per `<entity>_<action>` (every key of COUNT_KEYS), `active_users` (the
    tenant's active app users before the sync) and `group_mapping_missing` (imported groups
    whose mapping target is not an existing app group; their members are skipped).
    """
    params = {"tenant": tenant, "run_id": run_id, "import_managers": settings.import_managers}
    active = conn.execute(db.q("load/active_users"), params).scalar_one()
    missing = conn.execute(db.q("load/mapping_missing"), params).all()
    for graph_id, name in missing:
        log.warning(
            "tenant %s: group %s is mapped to app group %r, which does not exist; "
            "its members are not synced until group_mapping is fixed",
            tenant,
            graph_id,
            name,
        )
    run_script(conn, "load/diff", params)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    counts |= dict(conn.execute(db.q("load/diff_counts"), params).all())
    counts["active_users"] = active
    counts["group_mapping_missing"] = len(missing)
    counts = {k: int(v) for k, v in counts.items()}
    runs.set_planned(conn, run_id, counts)
    return counts


def planned_diff(
    conn: sa.Connection, tenant: str, run_id: int, settings: TenantSettings
) -> tuple[dict[str, int], bool]:
    """The counts of run_id's diff and whether it was computed here.

    The diff computed earlier in the same run (the `sync_diff` asset, which the blocking
    checks validated) is the one applied: what was checked and reported is what happens, and a
    100k-user tenant does not pay for the diff twice. A run that has none (the apply
    materialised on its own) computes it now.
    """
    counts = runs.planned(conn, run_id)
    if counts is not None and (
        # sync.diffs is unlogged: a server crash empties it, and the plan is made again
        not any(counts.get(key, 0) for key in COUNT_KEYS)
        or conn.execute(db.q("load/diff_exists"), {"tenant": tenant, "run_id": run_id}).scalar()
    ):
        return counts, False
    return compute_diff(conn, tenant, run_id, settings), True


def apply_diff(conn: sa.Connection, tenant: str, run_id: int) -> dict[str, int]:
    """Apply exactly run_id's stored diff rows, one set-wise statement per entity/action,
    and record each applied change with its before and after values in sync.changes.

    Runs inside the caller's transaction; the caller holds `db.tenant_lock` and commits or
    rolls back, so the audit is written if and only if the changes are. Returns the rows
    each step actually changed.
    """
    params = {"tenant": tenant, "run_id": run_id}
    run_script(conn, "audit/prior", params)  # prior values the diff rows do not carry
    counts: dict[str, int] = {}
    for key, name, action in _APPLY_STEPS:
        # a step's file may set planner options or build a temp table before its data
        # statement, which is its last statement that reports rows
        done = [n for n in run_script(conn, name, params | {"action": action}) if n >= 0]
        if not key.startswith("_"):  # a change split over two steps adds up
            counts[key] = counts.get(key, 0) + (done[-1] if done else 0)
    # the managers of the users this run created were set by their INSERT (apply_user_create)
    counts["manager_set"] += conn.execute(db.q("load/managers_set_at_create"), params).scalar_one()
    log.info("tenant %s: run %s applied %s changes", tenant, run_id, sum(counts.values()))
    return counts


def safety_check(counts: dict[str, int], settings: TenantSettings) -> tuple[bool, str]:
    """Whether the planned deactivations exceed the tenant's limit, and a message saying so.

    Exceeded when deactivations are more than `max_deactivation_percent` % of the active
    users, or more than `max_deactivations`, whichever is hit first. With no active users
    (a tenant's first sync) there is nothing to deactivate, so the percentage never trips.
    """
    deactivations = int(counts.get("user_deactivate", 0))
    active = int(counts.get("active_users", 0))
    percent = 100.0 * deactivations / active if active else 0.0
    limits = (
        f"limits: {settings.max_deactivation_percent:g}% of active users or "
        f"{settings.max_deactivations} users"
    )
    numbers = f"{deactivations} of {active} active users ({percent:.1f}%)"
    over_percent = percent > settings.max_deactivation_percent
    over_count = deactivations > settings.max_deactivations
    if not (over_percent or over_count):
        return False, f"tenant {settings.slug}: would deactivate {numbers}; within {limits}"
    return True, (
        f"tenant {settings.slug}: the sync would deactivate {numbers}, over the safety "
        f"{limits}. Nothing was changed. If this is expected, run "
        f"`sync-pipeline sync {settings.slug} --allow-mass-deactivation`, or launch the sync "
        "job with run config `allow_mass_deactivation: true` in the UI; or raise "
        "max_deactivation_percent / max_deactivations in the tenant's settings."
    )


def diff_markdown(conn: sa.Connection, tenant: str, run_id: int, limit: int = 50) -> str:
    """The diff as markdown for Dagster metadata: counts, then the first `limit` changes."""
    params = {"tenant": tenant, "run_id": run_id, "limit": limit}
    counts: dict[str, int] = dict(conn.execute(db.q("load/diff_counts"), params).all())
    lines = ["| change | count |", "| --- | ---: |"]
    lines += [f"| {key.replace('_', ' ')} | {counts.get(key, 0)} |" for key in COUNT_KEYS]
    total = sum(counts.values())
    if not total:
        return "\n".join([*lines, "", "No changes."])
    rows = conn.execute(db.q("load/diff_preview"), params).all()
    lines += [
        "",
        "| entity | action | who / what | before | after |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r.entity} | {r.action} | {_cell(r.label or r.key)} | {_cell(_json(r.before))} "
        f"| {_cell(_json(r.after))} |"
        for r in rows
    ]
    if total > len(rows):
        lines.append(f"\n… and {total - len(rows)} more changes (sync.diffs, run {run_id}).")
    return "\n".join(lines)


DIFF_COLUMNS = ("entity", "action", "who / what", "before", "after")


def diff_rows(conn: sa.Connection, tenant: str, run_id: int, limit: int = 50) -> list[dict]:
    """The first `limit` changes of the diff, one mapping per change (DIFF_COLUMNS), for a
    table in Dagster metadata (the UI sorts and scrolls it; markdown only wraps)."""
    params = {"tenant": tenant, "run_id": run_id, "limit": limit}
    return [
        dict(zip(DIFF_COLUMNS, (r.entity, r.action, r.label or r.key, _json(r.before),
                                _json(r.after)), strict=True))
        for r in conn.execute(db.q("load/diff_preview"), params)
    ]  # fmt: skip


def _json(value: object) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
