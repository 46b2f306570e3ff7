"""The tenant's settings applied to staging: what the app should hold (the snapshot).

Every Graph user and group of the latest extraction gets a snapshot row saying whether it is
imported and, if not, why; memberships are flattened through nested groups. All the work is
set-wise SQL in `sql/transform/*.sql`; this module only binds the settings. No Dagster imports.

Reason precedence for users (the first that applies is stored in `reason`; all of them, in this
order, in `reasons`): scope first, because it is the admin's broadest choice, then the account's
state, then its address:

    out_of_scope, disabled, guest, mailbox_type, unlicensed, no_email, deny_list, duplicate_email

`mailbox_type` is Graph's mailboxSettings.userPurpose (shared, room, ...) when the tenant's
`exclude_mailbox_types` names it; a purpose that could not be read never excludes anyone.

`duplicate_email` is settled only among users no other rule excludes, so it is always alone.
Addresses are compared as `addresses.py` says (NFKC, Unicode whitespace trimmed, lower-cased),
so a fullwidth, padded or ligature twin of an address is a `duplicate_email`, and one that is
malformed once normalised is `no_email`.

Odd but legal data never stops the sync: a manager cycle is cut at its lowest Graph id (the
user keeps no manager, `manager_note` says why; see `MANAGER_NOTES`), a nesting cycle is
flattened like any nesting, a blank group name shows as the group's id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.transform import addresses, snapshot_state

USER_REASONS = (
    "out_of_scope",
    "disabled",
    "guest",
    "mailbox_type",
    "unlicensed",
    "no_email",
    "deny_list",
    "duplicate_email",
)
GROUP_REASONS = (
    "groups_disabled",
    "distribution_list",
    "unsupported_type",
    "type_not_selected",
    "not_selected",
)

# Why an imported user with a manager in Graph has none in the app (snapshot_users.manager_note,
# before any `:detail`): the manager is not among the tenant's users; the manager is not
# imported (`:` its reason); the link was cut to break a manager cycle (`:` the cycle's Graph
# ids in manager order, starting at the user whose link was cut; see docs/checks.md).
MANAGER_NOTES = ("manager_not_found", "manager_excluded", "manager_cycle")

# The shape an address must have to be imported (its clean form, addresses.py); the checks
# use the same pattern.
ADDRESS_RE = addresses.ADDRESS_RE


# The transform's scripts (sql/transform/<name>.sql), in the order build_snapshot runs them.
SCRIPTS = ("closure", "users", "groups", "memberships")


def run_script(conn: sa.Connection, name: str, params: dict[str, object]) -> list[int]:
    """Run sql/<name>.sql statement by statement (each ends with `;` at a line's end).

    One server round trip per statement, each with bound parameters only (psycopg does not
    bind parameters into multi-statement strings). Returns each statement's rowcount.
    """
    return [conn.execute(sa.text(s), params).rowcount for s in db.statements(name)]


def snapshot_params(settings: TenantSettings) -> dict[str, object]:
    """The settings as the bound parameters of the transform statements."""
    deny = [entry.strip().lower() for entry in settings.email_deny_list]
    return {
        "tenant": settings.slug,
        "email_method": settings.email_method,
        "address_re": ADDRESS_RE,
        "user_scope": settings.user_scope,
        "scope_group_ids": list(settings.scope_group_ids),
        "include_disabled": settings.include_disabled,
        "include_guests": settings.include_guests,
        "exclude_unlicensed": settings.exclude_unlicensed,
        "exclude_mailbox_types": list(settings.exclude_mailbox_types),
        "deny_addresses": [e for e in deny if not e.startswith("*@")],
        "deny_domains": [e.removeprefix("*@") for e in deny if e.startswith("*@")],
        "import_managers": settings.import_managers,
        "include_groups": settings.include_groups,
        "group_types": list(settings.group_types),
        "group_ids": list(settings.group_ids),
        "group_mapping_enabled": settings.group_mapping_enabled,
        "group_mapping": json.dumps(
            settings.group_mapping if settings.group_mapping_enabled else {}
        ),
    }


SNAPSHOT_TABLES = ("sync.snapshot_users", "sync.snapshot_groups", "sync.snapshot_memberships")

# The incremental path (refresh_snapshot) is on unless a caller asks for the full one.
INCREMENTAL = True
# Past this share of the snapshot's users touched, the full rebuild is the cheaper one.
INCREMENTAL_MAX_SHARE = 0.25
_INCREMENTAL_SCRIPTS = ("incremental", "inc_memberships")


@dataclass(frozen=True)
class Refresh:
    """Which path built the snapshot and how much it touched (for metadata)."""

    path: str  # full | incremental
    full_reason: str  # why the full path ran ("" when incremental)
    keys_touched: int  # keys in the extraction's change set (users and groups)
    users_recomputed: int  # users resolved again (incremental; every user when full)
    groups_recomputed: int  # groups whose memberships were recomputed (incremental)
    # a whole verification: "" (none), "match" or "mismatch" (the full rebuild was kept)
    verified: str = ""
    mismatches: tuple[tuple[str, str, str], ...] = ()  # (table, key, side), the first ones
    mismatch_count: int = 0

    def metadata(self) -> dict[str, str | int]:
        return {
            "transform_path": self.path,
            "transform_full_reason": self.full_reason,
            "transform_keys_touched": self.keys_touched,
            "transform_users_recomputed": self.users_recomputed,
            "transform_groups_recomputed": self.groups_recomputed,
            "transform_verified": self.verified or "not this run",
            "transform_verify_mismatches": self.mismatch_count,
        }


def build_snapshot(conn: sa.Connection, settings: TenantSettings) -> dict[str, int]:
    """Bring the tenant's snapshot rows to staging filtered by its settings (the full path).

    The snapshot tables end up exactly as if rebuilt from scratch, but only the difference is
    written (rows gone, changed, new), so a scheduled sync over an unchanged directory writes
    next to nothing (see sql/transform/memberships.sql). Runs inside the caller's transaction
    (temporary tables are dropped at commit). Returns counts for metadata: users_included,
    users_excluded, excluded_<reason> for every user reason, groups_included, groups_excluded,
    groups_excluded_<reason>, groups_mapped, memberships, managers_set, managers_cut_cycle.
    """
    return refresh_snapshot(conn, settings, incremental=False)[0]


def refresh_snapshot(
    conn: sa.Connection,
    settings: TenantSettings,
    *,
    incremental: bool | None = None,
    verify: bool = False,
) -> tuple[dict[str, int], Refresh]:
    """build_snapshot, recomputing only what the extraction's change set can have changed
    when that is safe (snapshot_state.full_reason); the result is row for row the full
    path's (sync_pipeline_tests/test_incremental_equality.py). Also returns which path ran.

    `verify` (a whole verification, due every full_verification_days): after the incremental
    path, the full path rebuilds the snapshot too and the two are compared row for row. On a
    mismatch the full rebuild is kept, the snapshot state is forgotten (the next transform
    rebuilds in full) and the Refresh names the differing rows; the caller blocks the run."""
    params = snapshot_params(settings) | {"incremental": False}
    tenant = settings.slug
    fp = snapshot_state.fingerprint(conn, params, SCRIPTS + _INCREMENTAL_SCRIPTS)
    run_script(conn, "transform/state/consume", params)
    touched = snapshot_state.touched(conn)
    keys = sum(n for k, n in touched.items() if k != "full")
    wanted = INCREMENTAL if incremental is None else incremental
    state = snapshot_state.read(conn, tenant)
    reason = snapshot_state.full_reason(state, fp, touched) if wanted else "asked"
    run_script(conn, "transform/closure", params)
    if reason is None and _scope_touched(conn, settings):
        reason = "scope_changed"
    if reason is None:
        run_script(conn, "transform/incremental", params)
        users, groups = conn.execute(db.q("transform/state/recompute_counts")).one()
        total = conn.execute(db.q("transform/state/snapshot_users"), params).scalar_one()
        if users > INCREMENTAL_MAX_SHARE * max(total, 1):
            reason = "many_changes"
    if reason is None:
        params["incremental"] = True
        for name in ("users", "groups", "inc_memberships"):
            run_script(conn, f"transform/{name}", params)
        # inc_memberships added the groups whose inclusion changed (groups.sql)
        groups = conn.execute(db.q("transform/state/recompute_counts")).one()[1]
        refresh = Refresh("incremental", "", keys, int(users), int(groups))
        if verify:
            refresh = _verify(conn, params, refresh)
    else:
        for name in SCRIPTS[1:]:
            run_script(conn, f"transform/{name}", params)
        refresh = Refresh("full", reason, keys, -1, -1)
    counts = {f"excluded_{r}": 0 for r in USER_REASONS}
    counts |= {f"groups_excluded_{r}": 0 for r in GROUP_REASONS}
    counts |= dict(conn.execute(db.q("transform/counts"), params).all())
    if refresh.path == "incremental" and refresh.verified != "mismatch":
        assert state is not None  # the incremental path ran on a recorded state
        counts["memberships"] = conn.execute(
            db.q("transform/memberships_counted"), {"previous": state.memberships}
        ).scalar_one()
    else:
        counts["memberships"] = conn.execute(
            db.q("transform/memberships_count"), params
        ).scalar_one()
    counts = {k: int(v) for k, v in counts.items()}
    snapshot_state.record(conn, tenant, fp, counts, refresh.path)
    if refresh.verified == "mismatch":
        conn.execute(db.q("transform/state/forget"), {"tenant": tenant})
    sizes = dict(zip(SNAPSHOT_TABLES, _table_sizes(counts), strict=True))
    db.analyze_if_stale(conn, list(SNAPSHOT_TABLES), tenant, sizes=sizes)
    return counts, refresh


def _table_sizes(counts: dict[str, int]) -> tuple[int, int, int]:
    """The tenant's rows in each of SNAPSHOT_TABLES, from the counts."""
    return (
        counts["users_included"] + counts["users_excluded"],
        counts["groups_included"] + counts["groups_excluded"],
        counts["memberships"],
    )


def _verify(conn: sa.Connection, params: dict[str, object], refresh: Refresh) -> Refresh:
    """Rebuild the incremental snapshot in full and compare (see refresh_snapshot)."""
    run_script(conn, "transform/state/verify_copy", params)
    for name in SCRIPTS[1:]:
        run_script(conn, f"transform/{name}", params | {"incremental": False})
    rows = conn.execute(
        db.q("transform/state/verify_compare"), {"tenant": params["tenant"], "limit": 20}
    ).all()
    return replace(
        refresh,
        verified="mismatch" if rows else "match",
        mismatches=tuple((r.tbl, r.key, r.side) for r in rows),
        mismatch_count=int(rows[0].total) if rows else 0,
    )


def _scope_touched(conn: sa.Connection, settings: TenantSettings) -> bool:
    """Whether a touched group decides who is in scope (then every user may change)."""
    if settings.user_scope != "selected_groups":
        return False
    params = {"scope_group_ids": list(settings.scope_group_ids)}
    return bool(conn.execute(db.q("transform/state/scope_touched"), params).scalar_one())
