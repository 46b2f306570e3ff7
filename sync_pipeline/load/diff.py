"""Snapshot vs app: the planned changes (sync.diffs), their set-wise apply, the safety limit.

`compute_diff` writes what a sync would change; a test sync reports exactly those rows and a
sync applies exactly them (`apply_diff`), so what the admin saw is what happens. All work is
set-wise SQL in `sql/load/*.sql`. No Dagster imports.

Ownership, in short: the sync manages users it created or adopted (source `m365`), groups it
created (source `m365`) and memberships with source `m365`; rows a person made in the app are
never changed, except that an active manual user with a synced address is adopted once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.core.textfiles import markdown_cell
from sync_pipeline.load import gate
from sync_pipeline.outbox import events
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


# The incremental diff (scope.sql) is on unless a caller asks for the whole one.
INCREMENTAL = True
# Past this share of the snapshot's users to look at again, the whole diff is the cheaper one.
INCREMENTAL_MAX_SHARE = 0.25
_FINGERPRINTED = ("load/diff", "load/state/scope")


@dataclass(frozen=True)
class DiffPath:
    """How a diff was computed (for metadata): incremental or whole, and why whole."""

    path: str  # full | incremental
    full_reason: str  # "" when incremental
    users_considered: int  # users diffed (every snapshot user when full)
    # a whole verification: "" (none), "match" or "mismatch" (the whole diff was kept)
    verified: str = ""
    mismatches: tuple[tuple[str, str, str], ...] = ()  # (change, key, side), the first ones
    mismatch_count: int = 0
    # a run of one person: their adds to groups the app does not hold yet, left to the next sync
    deferred: tuple[str, ...] = ()

    def metadata(self) -> dict[str, str | int]:
        return {
            "diff_path": self.path,
            "diff_full_reason": self.full_reason,
            "diff_users_considered": self.users_considered,
            "diff_verified": self.verified or "not this run",
            "diff_verify_mismatches": self.mismatch_count,
        }


def compute_diff(
    conn: sa.Connection,
    tenant: str,
    run_id: int,
    settings: TenantSettings,
    *,
    incremental: bool | None = None,
    allow_mass_deactivation: bool = False,
) -> dict[str, int]:
    """Replace run_id's sync.diffs rows with the changes that make app.* match the snapshot,
    less what the deactivation gate withholds (load/gate.py).

    Returns counts per `<entity>_<action>` (every key of COUNT_KEYS), the gate's counts
    (gate.COUNT_KEYS), `active_users` (the tenant's active app users before the sync) and
    `group_mapping_missing` (imported groups whose mapping target is not an existing app
    group; their members are skipped).
    """
    return compute_diff_path(
        conn,
        tenant,
        run_id,
        settings,
        incremental=incremental,
        allow_mass_deactivation=allow_mass_deactivation,
    )[0]


def compute_diff_path(
    conn: sa.Connection,
    tenant: str,
    run_id: int,
    settings: TenantSettings,
    *,
    incremental: bool | None = None,
    verify: bool = False,
    allow_mass_deactivation: bool = False,
    person: str | None = None,
) -> tuple[dict[str, int], DiffPath]:
    """compute_diff, over only the users whose rows in the snapshot or in app.* changed since
    the last applied diff (sync.diff_dirty, migration 015) when that is safe (`_full_reason`);
    the rows are the whole diff's either way (sync_pipeline_tests/test_incremental_diff.py).
    Also returns which path ran.

    `verify` (a whole verification, due every full_verification_days): after the incremental
    diff, the whole one is computed for the same run and the two compared row for row. The
    whole diff is kept; on a mismatch the diff state is forgotten (the next diff is whole) and
    the DiffPath names the differing rows; the caller blocks the apply.

    `person` (a Graph id: `sync --user`): the diff of that one person alone, by the same
    statements (load/state/scope_person.sql), less every row about anyone or anything else
    (load/person_only.sql); no key is consumed, so the next sync diffs the rest as before."""
    params: dict[str, object] = {
        "tenant": tenant,
        "run_id": run_id,
        "import_managers": settings.import_managers,
    }
    fp = _fingerprint(conn, settings)
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
    unreadable = bool(conn.execute(db.q("load/state/unreadable"), params).scalar_one())
    if person is not None:
        return _person_diff(conn, settings, run_id, params | {"person": person}, int(active), fp,
                            unreadable, len(missing), allow_mass_deactivation)  # fmt: skip
    wanted = INCREMENTAL if incremental is None else incremental
    reason = _full_reason(conn, settings, fp, unreadable) if wanted else "asked"
    # the change set is remembered either way (the apply consumes it); the users it reaches
    # are worked out only for an incremental diff
    run_script(conn, "load/state/scope", params | {"populate": reason is None})
    considered, total = conn.execute(db.q("load/state/scope_counts"), params).one()
    if reason is None and considered > INCREMENTAL_MAX_SHARE * max(total, 1):
        reason = "many_changes"
    path = (
        DiffPath("incremental", "", int(considered))
        if reason is None
        else DiffPath("full", reason, int(total))
    )
    run_script(conn, "load/diff", params | {"incremental": reason is None})
    if verify and reason is None:
        path = _verify(conn, params, path)
    # what the gate withholds leaves the diff before anything checks, reports or applies it
    withheld = gate.classify(
        conn, settings, run_id, int(active), allow_mass_deactivation=allow_mass_deactivation
    )
    conn.execute(
        db.q("load/state/plan"),
        params
        | {
            "path": path.path,
            "full_reason": path.full_reason,
            "fingerprint": fp,
            "unreadable": unreadable,
            "users_considered": path.users_considered,
        },
    )
    return _planned(conn, params, run_id, withheld, int(active), len(missing)), path


def _planned(
    conn: sa.Connection,
    params: dict[str, object],
    run_id: int,
    withheld: dict[str, int],
    active: int,
    missing: int,
) -> dict[str, int]:
    """The plan's counts (what the gate withheld included), recorded with the run."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    counts |= dict(conn.execute(db.q("load/diff_counts"), params).all())
    counts |= withheld
    counts["active_users"] = active
    counts["group_mapping_missing"] = missing
    counts = {k: int(v) for k, v in counts.items()}
    runs.set_planned(conn, run_id, counts)
    # A first load plans 1.2 M rows the planner does not know of: the apply's joins of them
    # with app.users and app.groups hashed the plan (two tables of ~370 MB in the backend)
    # instead of the app's few thousand groups. Our own table, so analysed here, in the
    # plan's transaction, when the plan is large for what the statistics hold.
    planned = sum(counts.get(k, 0) for k in COUNT_KEYS)
    db.analyze_after_writes(conn, {"sync.diffs": planned}, str(params["tenant"]))
    return counts


def _person_diff(
    conn: sa.Connection,
    settings: TenantSettings,
    run_id: int,
    params: dict[str, object],
    active: int,
    fp: str,
    unreadable: bool,
    missing: int,
    allow_mass_deactivation: bool,
) -> tuple[dict[str, int], DiffPath]:
    """compute_diff_path for one person (see there)."""
    run_script(conn, "load/state/scope_person", params)
    run_script(conn, "load/diff", params | {"incremental": True})
    deferred = tuple(str(r[0]) for r in conn.execute(db.q("load/person_only"), params))
    withheld = gate.classify(
        conn, settings, run_id, active, allow_mass_deactivation=allow_mass_deactivation
    )
    path = DiffPath("person", "", 1, deferred=deferred)
    conn.execute(
        db.q("load/state/plan"),
        params
        | {
            "path": path.path,
            "full_reason": "",
            "fingerprint": fp,
            "unreadable": unreadable,
            "users_considered": 1,
        },
    )
    return _planned(conn, params, run_id, withheld, active, missing), path


def _verify(conn: sa.Connection, params: dict[str, object], path: DiffPath) -> DiffPath:
    """Compute the whole diff over the incremental one's run and compare (see
    compute_diff_path)."""
    run_script(conn, "load/state/verify_copy", params)
    run_script(conn, "load/diff", params | {"incremental": False})
    rows = conn.execute(db.q("load/state/verify_compare"), params | {"limit": 20}).all()
    if rows:
        conn.execute(db.q("load/state/forget"), params)
    return replace(
        path,
        verified="mismatch" if rows else "match",
        mismatches=tuple((r.change, r.key, r.side) for r in rows),
        mismatch_count=int(rows[0].total) if rows else 0,
    )


def _fingerprint(conn: sa.Connection, settings: TenantSettings) -> str:
    """One hash of what the diff reads besides the two sides' rows: the settings it binds,
    the newest migration and its SQL. A change makes the next diff whole."""
    schema = conn.execute(db.q("transform/state/schema_version")).scalar_one_or_none()
    digest = hashlib.sha256(
        json.dumps([settings.import_managers, settings.group_mapping_enabled, str(schema)]).encode()
    )
    for name in _FINGERPRINTED:
        digest.update(db.load_sql(name).encode())
    return digest.hexdigest()


def _full_reason(
    conn: sa.Connection, settings: TenantSettings, fp: str, unreadable: bool
) -> str | None:
    """Why the diff must be computed whole, or None when the change set suffices."""
    state = conn.execute(db.q("load/state/read"), {"tenant": settings.slug}).one_or_none()
    if state is None:
        return "first_diff"  # never applied (or a TRUNCATE forgot it)
    if state.fingerprint != fp:
        return "settings_or_schema_changed"
    if settings.group_mapping_enabled:
        # several Graph groups onto one app group: a membership depends on other groups'
        return "group_mapping"
    if unreadable or state.unreadable:
        # kept memberships of unreadable groups depend on the read, not on the rows
        return "unreadable_groups"
    return None


def planned_diff(
    conn: sa.Connection,
    tenant: str,
    run_id: int,
    settings: TenantSettings,
    *,
    allow_mass_deactivation: bool = False,
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
    return compute_diff(
        conn, tenant, run_id, settings, allow_mass_deactivation=allow_mass_deactivation
    ), True


def apply_diff(
    conn: sa.Connection, tenant: str, run_id: int, *, person: str | None = None
) -> dict[str, int]:
    """Apply exactly run_id's stored diff rows, one set-wise statement per entity/action,
    and record each applied change with its before and after values in sync.changes.

    Runs inside the caller's transaction; the caller holds `db.tenant_lock` and commits or
    rolls back, so the audit and the outbox's events (outbox/events.py) are written if and
    only if the changes are. Returns the rows each step actually changed.

    `person` (a Graph id: a run of one person, compute_diff_path): the gate's memory changes
    for that person alone, and no dirty key is consumed (the next diff looks at them all).
    """
    params = {"tenant": tenant, "run_id": run_id}
    # the apply's own writes bring keys in line with the snapshot: not recorded as changes
    # to diff again (migration 015); the app's writes, and an undo's, are
    conn.execute(db.q("load/state/writer"), {"writer": "sync"})
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
    gate.remember(conn, tenant, run_id, person=person)  # for the next sync's gate
    # the outbox, from the audit rows just written: joiners, leavers, movers... (issue 18)
    events.emit(conn, tenant, run_id)
    if person is None:
        run_script(conn, "load/state/consume", params)
    conn.execute(db.q("load/state/writer"), {"writer": ""})
    db.analyze_after_writes(
        conn,
        {
            "app.users": counts["user_create"] + counts["user_update"] + counts["manager_set"],
            "app.groups": counts["group_create"],
            "app.group_members": counts["membership_add"] + counts["membership_remove"],
        },
        tenant,
    )
    log.info("tenant %s: run %s applied %s changes", tenant, run_id, sum(counts.values()))
    return counts


def safety_check(counts: dict[str, int], settings: TenantSettings) -> tuple[bool, str]:
    """Whether the run's deactivations exceed the tenant's limit, and a message saying so.

    Exceeded when deactivations are more than `max_deactivation_percent` % of the active
    users, or more than `max_deactivations`, whichever is hit first. With no active users
    (a tenant's first sync) there is nothing to deactivate, so the percentage never trips.
    Deactivations a person approved (`sync-pipeline approve`) do not count. The gate
    (load/gate.py) holds the due deactivations when they would exceed it, so after the gate
    this trips only when an operator allowed a mass deactivation, or on a broken invariant.
    """
    deactivations = int(counts.get("user_deactivate", 0)) - int(
        counts.get("gate_deactivate_approved", 0)
    )
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


def held_message(counts: dict[str, int], settings: TenantSettings) -> str | None:
    """What the gate held in this run, and the way out; None when nothing was held."""
    people = int(counts.get("gate_deactivate_held", 0))
    removals = int(counts.get("gate_membership_remove_held", 0))
    conflicts = int(counts.get("gate_reactivate_app_decision", 0)) + int(
        counts.get("gate_membership_add_app_decision", 0)
    )
    parts = []
    if people:
        parts.append(
            f"{people} deactivation(s) held: together over the safety limit "
            f"({settings.max_deactivation_percent:g}% of active users or "
            f"{settings.max_deactivations} users)"
        )
    if removals:
        parts.append(
            f"{removals} membership removal(s) held: their groups lost more than "
            f"{settings.max_group_removal_percent:g}% of their members"
        )
    if conflicts:
        parts.append(f"{conflicts} change(s) not made because the app decided otherwise")
    if not parts:
        return None
    return (
        f"tenant {settings.slug}: " + "; ".join(parts) + ". Everything else was applied. "
        f"Review them with `sync-pipeline held {settings.slug}`, then "
        f"`sync-pipeline approve {settings.slug} --all` (or EMAIL...) or "
        f"`sync-pipeline reject {settings.slug} EMAIL...`."
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
        f"| {r.entity} | {r.action} | {markdown_cell(r.label or r.key)} "
        f"| {markdown_cell(_json(r.before))} | {markdown_cell(_json(r.after))} |"
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
