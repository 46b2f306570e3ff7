"""The impact of a settings change before it is saved: what the next sync would do with the
candidate settings, computed on the tenant's latest staging rows and written nowhere.

The transform (forced whole) and the whole diff run with the candidate settings in one
transaction under the tenant's lock, as a sync's stages do, over a sync.runs row made in the
same transaction; the counts and the first leavers and joiners are read from sync.diffs, and
then everything is rolled back: no snapshot, diff, run, change-tracking or state row is left.
No Graph call (the rows are the latest extraction's), no Dagster and no click imports.

Which settings narrow or widen who and what is imported (SCOPE_FIELDS) is decided here, so
every caller previews the same changes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.load import diff
from sync_pipeline.load.seats import Seats, from_counts
from sync_pipeline.registry import runs, tenants
from sync_pipeline.transform import rules, unreadable

SCOPE_FIELDS = (
    "user_scope",
    "scope_group_ids",
    "include_groups",
    "include_disabled",
    "include_guests",
    "exclude_unlicensed",
    "exclude_mailbox_types",
    "email_method",
    "group_types",
    "group_ids",
    "email_deny_list",
)
SHOWN = 20  # leavers and joiners listed by address; the counts cover them all
# How long a preview waits for the tenant's lock (an extraction or an apply holding it)
# before it says the tenant is busy, rather than keeping the admin's terminal waiting.
LOCK_WAIT = "10s"
_LOCK_NOT_AVAILABLE = "55P03"
# The preview's run in sync.runs (rolled back with everything else): a Dagster run id no
# Dagster run has, so it can never be taken for one.
_RUN_PREFIX = "settings-preview:"


class PreviewUnavailable(Exception):
    """The impact cannot be computed now; the message says why (naming the tenant)."""


class NeverSynced(PreviewUnavailable):
    """The tenant has no staging rows yet: there is nothing to compute the impact on."""


def scope_changes(before: TenantSettings | None, after: TenantSettings) -> list[str]:
    """The SCOPE_FIELDS whose values differ (none for a tenant not registered before)."""
    if before is None:
        return []
    return [f for f in SCOPE_FIELDS if getattr(before, f) != getattr(after, f)]


@dataclass(frozen=True)
class Person:
    email: str
    action: str  # create | reactivate | deactivate | pending (grace period) | held (limit)
    reason: str | None  # why a leaver is left out (None: Graph no longer lists them)


@dataclass(frozen=True)
class Impact:
    """What the next sync would do with the candidate settings."""

    tenant: str
    extracted_at: datetime
    counts: dict[str, int]  # diff.COUNT_KEYS and active_users
    address_changes: int
    leavers: list[Person] = field(default_factory=list)  # the first SHOWN
    joiners: list[Person] = field(default_factory=list)  # the first SHOWN
    over_safety_limit: bool = False
    safety_message: str = ""
    # exclude_mailbox_types set: staged people whose mailbox type is not read yet, which the
    # preview cannot leave out (the next sync reads them first)
    mailbox_types_unread: int = 0

    @property
    def seats(self) -> Seats:
        return from_counts(self.counts)

    @property
    def joiners_total(self) -> int:
        return self.counts["user_create"] + self.counts["user_reactivate"]

    @property
    def leavers_total(self) -> int:
        """Everyone leaving scope: deactivated by the next sync, or pending for the grace
        period, or held over the safety limit (load/gate.py); protected people and rejected
        deactivations stay."""
        c = self.counts
        return (
            c["user_deactivate"]
            + c.get("gate_deactivate_pending", 0)
            + c.get("gate_deactivate_held", 0)
        )

    @property
    def leavers_later(self) -> int:
        """The leavers the next sync itself would not deactivate yet (grace, or held)."""
        return self.leavers_total - self.counts["user_deactivate"]


def compute(engine: sa.Engine, settings: TenantSettings, *, shown: int = SHOWN) -> Impact:
    """The impact of `settings` (the candidate, not yet saved) on the tenant's next sync.

    Raises NeverSynced when the tenant has no staging rows, PreviewUnavailable when the
    latest extraction cannot answer (a group the settings name is not in it, a scope group's
    members could not be read) or the tenant's lock stays taken for LOCK_WAIT."""
    tenant = settings.slug
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            return _compute(conn, settings, shown)
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            raise PreviewUnavailable(
                f"tenant {tenant}: a sync of the tenant is writing now (its lock was taken for "
                f"over {LOCK_WAIT}); preview the change once it ends"
            ) from None
        finally:
            transaction.rollback()  # always: the preview writes nothing


def _compute(conn: sa.Connection, settings: TenantSettings, shown: int) -> Impact:
    tenant = settings.slug
    params: dict[str, object] = {"tenant": tenant}
    extracted_at = conn.execute(db.q("preview/extracted_at"), params).scalar_one_or_none()
    if extracted_at is None:
        raise NeverSynced(
            f"tenant {tenant}: no preview: it has never been synced (no rows read from Graph "
            "yet), so there is nothing to compare the new settings with"
        )
    conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))  # a constant of ours
    with db.tenant_lock(conn, tenant):
        conn.execute(sa.text("SET LOCAL lock_timeout = DEFAULT"))
        _check_extraction(conn, settings, extracted_at)
        run_id = runs.ensure(conn, tenant, f"{_RUN_PREFIX}{uuid.uuid4()}", dry_run=True)
        rules.refresh_snapshot(conn, settings, incremental=False)
        counts = diff.compute_diff(conn, tenant, run_id, settings, incremental=False)
        # the limit against everyone leaving, not only those the next sync deactivates: a
        # grace period only puts the mass deactivation off until the people are due
        leaving = (
            counts["user_deactivate"]
            + counts["gate_deactivate_pending"]
            + counts["gate_deactivate_held"]
        )
        exceeded, _ = diff.safety_check(counts | {"user_deactivate": leaving}, settings)
        params |= {"run_id": run_id, "limit": shown}
        unread = (
            conn.execute(db.q("preview/mailbox_types_unread"), params).scalar_one()
            if settings.exclude_mailbox_types
            else 0
        )
        return Impact(
            tenant=tenant,
            extracted_at=extracted_at,
            counts=counts,
            address_changes=conn.execute(db.q("preview/address_changes"), params).scalar_one(),
            leavers=_people(conn, params, ["deactivate"]),
            joiners=_people(conn, params, ["create", "reactivate"]),
            over_safety_limit=exceeded,
            safety_message=(
                safety_sentence(counts | {"user_deactivate": leaving}, settings) if exceeded else ""
            ),
            mailbox_types_unread=int(unread),
        )


def _check_extraction(
    conn: sa.Connection, settings: TenantSettings, extracted_at: datetime
) -> None:
    """The latest extraction must hold what the settings name, or the impact is unknown."""
    tenant = settings.slug
    for setting, ids in tenants.referenced_group_ids(settings).items():
        if not ids:
            continue
        missing = list(
            conn.execute(
                db.q("tenants/staged_groups_missing"), {"tenant": tenant, "ids": ids}
            ).scalars()
        )
        if missing:
            raise PreviewUnavailable(
                f"tenant {tenant}: {setting} names group {missing[0]!r}, which the latest read "
                f"from Graph ({extracted_at:%Y-%m-%d %H:%M %Z}) does not hold, so the "
                "impact cannot be computed until the next sync reads it"
            )
    try:
        unreadable.check_scope(conn, settings)
    except unreadable.ScopeUnreadable as exc:
        raise PreviewUnavailable(str(exc)) from None


def _people(conn: sa.Connection, params: dict[str, object], actions: list[str]) -> list[Person]:
    rows = conn.execute(db.q("preview/people"), params | {"actions": actions})
    return [Person(r.email, r.action, r.reason) for r in rows]


def safety_sentence(counts: dict[str, int], settings: TenantSettings) -> str:
    """The safety limit the candidate settings' next sync would go over, with the numbers."""
    deactivations, active = counts.get("user_deactivate", 0), counts.get("active_users", 0)
    percent = 100.0 * deactivations / active if active else 0.0
    return (
        f"tenant {settings.slug}: with these settings the next sync would deactivate "
        f"{deactivations:,} of {active:,} active users ({percent:.1f}%), over the safety "
        f"limit ({settings.max_deactivation_percent:g}% of active users or "
        f"{settings.max_deactivations:,} users): when they are due, the sync holds their "
        "deactivations for review and applies the rest (`sync-pipeline held "
        f"{settings.slug}`, then `approve` or `reject`), or "
        f"`sync-pipeline sync {settings.slug} --allow-mass-deactivation` lets them through"
    )
