"""The deactivation gate: what a sync withholds from its diff instead of applying it.

After the diff (load/diff.py) and before anything checks, reports or applies it,
`sql/load/gate.sql` classifies (sync.diff_gate, one row per change it looked at):
- every deactivation: `pending` within the grace period (deactivation_grace_reads complete
  reads and deactivation_grace_hours out of scope), `protected` (protected_users), `rejected`
  or `approved` by a person, `held` when the due ones exceed the safety limit (the rest of the
  sync applies), `allowed` when the operator allowed a mass deactivation, else `due`;
- the removals from a group that loses more than max_group_removal_percent of its members
  (groups of at least group_removal_min_members): `held`, unless decided;
- the reactivation of a user the app deactivated itself, and the re-add of a membership a
  person removed in the app: `app_decision`, left to `sync-pipeline approve`;
- the memberships of people whose deactivation or reactivation is withheld: `with_person`.

Withheld changes leave sync.diffs, so that a test sync reports and an apply writes exactly
sync.diffs, as before. The apply remembers them (sync.withheld) and forgets what no longer
comes up (`sql/load/gate_apply.sql`); a test sync or a blocked run moves no clock. People
decide through `sync-pipeline held / approve / reject` (sync.decisions, audited as a run
with sync.changes rows of entity `decision`, undoable). No Dagster imports.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.outbox import events
from sync_pipeline.registry import runs
from sync_pipeline.transform.rules import run_script

WITHHELD = (
    "pending",
    "held",
    "protected",
    "rejected",
    "with_person",
    "app_decision",
    "address_in_use",
)
# What `held`, the report and explain list: a membership withheld with its person is the
# person's (counted, not listed).
LISTED = tuple(s for s in WITHHELD if s != "with_person")
# The sync.diffs rows (entity, action) of each kind of gate row.
DIFF_ROWS = {
    "deactivate": ("user", "deactivate"),
    "reactivate": ("user", "reactivate"),
    "create": ("user", "create"),
    "update": ("user", "update"),
    "membership_remove": ("membership", "remove"),
    "membership_add": ("membership", "add"),
}
# Metadata keys: gate_<kind>_<status>, the ones an operator plots over runs.
COUNT_KEYS = (
    "gate_deactivate_pending",
    "gate_deactivate_held",
    "gate_deactivate_protected",
    "gate_deactivate_rejected",
    "gate_deactivate_approved",
    "gate_deactivate_allowed",
    "gate_membership_remove_held",
    "gate_membership_remove_with_person",
    "gate_reactivate_app_decision",
    "gate_membership_add_app_decision",
    "gate_create_address_in_use",
    "gate_update_address_in_use",
    "gate_reactivate_address_in_use",
)
# The statuses a person can decide on. A membership withheld with its person follows the
# person's decision; a protected person is a setting (protected_users), not a decision.
DECIDABLE = ("pending", "held", "app_decision", "rejected")


def classify(
    conn: sa.Connection,
    settings: TenantSettings,
    run_id: int,
    active_users: int,
    *,
    allow_mass_deactivation: bool,
) -> dict[str, int]:
    """Run the gate over run_id's fresh diff; returns the gate_* counts (COUNT_KEYS)."""
    params = {
        "tenant": settings.slug,
        "run_id": run_id,
        "grace_reads": settings.deactivation_grace_reads,
        "grace_hours": settings.deactivation_grace_hours,
        "deleted_skip_grace": settings.deleted_skip_grace,
        "protected": [p.lower() for p in settings.protected_users],
        "allow_mass": allow_mass_deactivation,
        "max_count": settings.max_deactivations,
        "max_percent": settings.max_deactivation_percent,
        "active": active_users,
        "group_min": settings.group_removal_min_members,
        "group_percent": settings.max_group_removal_percent,
    }
    run_script(conn, "load/gate", params)
    for (kind,) in conn.execute(db.q("load/gate_withheld_kinds"), params).all():
        entity, action = DIFF_ROWS[kind]
        conn.execute(
            db.q("load/gate_withhold"), {**params, "kind": kind, "entity": entity, "action": action}
        )
    conn.execute(sa.text("SELECT set_config('enable_nestloop', 'on', true)"))
    return counts(conn, settings.slug, run_id)


def counts(conn: sa.Connection, tenant: str, run_id: int) -> dict[str, int]:
    """gate_<kind>_<status> counts of run_id (every key of COUNT_KEYS, zeros included)."""
    out = dict.fromkeys(COUNT_KEYS, 0)
    for kind, status, n in conn.execute(
        db.q("load/gate_counts"), {"tenant": tenant, "run_id": run_id}
    ):
        out[f"gate_{kind}_{status}"] = int(n)
    return out


def remember(conn: sa.Connection, tenant: str, run_id: int, *, person: str | None = None) -> None:
    """After an apply, in its transaction: sync.withheld and sync.decisions follow the run;
    after a run of one person (`person`, a Graph id), only what concerns that person."""
    run_script(conn, "load/gate_apply", {"tenant": tenant, "run_id": run_id, "person": person})


class NothingToDecide(LookupError):
    """An address, or --all, that matches no withheld change (bad input)."""


def decide(
    conn: sa.Connection,
    tenant: str,
    chosen: list[Withheld],
    decision: str,
    by: str,
    note: str | None,
) -> int:
    """Approve or reject `chosen` (withheld changes) as a run of its own; returns its id.

    In the caller's transaction, under the tenant lock (a sync applying meanwhile would
    otherwise forget a decision it never saw). Audited in sync.changes (entity `decision`),
    so `history` shows it and `undo` reverts it."""
    if decision not in ("approved", "rejected"):
        raise ValueError(f"decision must be approved or rejected, not {decision!r}")
    with db.tenant_lock(conn, tenant):
        run_id = int(conn.execute(db.q("load/decision_start"), {"tenant": tenant}).scalar_one())
        conn.execute(
            db.q("load/decide"),
            {
                "tenant": tenant,
                "run_id": run_id,
                "kinds": [w.kind for w in chosen],
                "keys": [w.key for w in chosen],
                "decision": decision,
                "by": by,
                "note": note,
            },
        )
        # a decision changes no app row, so it makes no event (the apply that carries it out
        # does); called all the same, so every writer of sync.changes feeds the outbox
        events.emit(conn, tenant, run_id)
        action = "approve" if decision == "approved" else "reject"
        runs.finish(conn, run_id, "success", counts={f"decision_{action}": len(chosen)})
    return run_id


def select(
    rows: list[Withheld], emails: tuple[str, ...], everything: bool, tenant: str
) -> list[Withheld]:
    """The withheld changes `approve`/`reject` act on: all of them, or those of the people
    named (by address, case-insensitive). An address with none is bad input."""
    decidable = [w for w in rows if w.status in DECIDABLE]
    if everything:
        if not decidable:
            raise NothingToDecide(f"tenant {tenant}: nothing is withheld; nothing to decide")
        return decidable
    out: list[Withheld] = []
    for email in emails:
        mine = [w for w in decidable if (w.email or "").lower() == email.strip().lower()]
        if not mine:
            raise NothingToDecide(
                f"tenant {tenant}: EMAIL {email!r} has no withheld change; "
                f"`sync-pipeline held {tenant}` lists them"
            )
        out += [w for w in mine if w not in out]
    return out


@dataclass(frozen=True)
class Withheld:
    """One withheld change of a run, as the CLI, the report and explain show it."""

    kind: str
    key: str
    label: str
    status: str
    reason: str
    since: dt.datetime | None
    reads: int | None
    due_at: dt.datetime | None
    held_since: dt.datetime | None
    decision: str | None
    decided_by: str | None
    email: str | None  # the person's address in the app
    group: str | None  # the group's name (memberships)


def withheld(
    conn: sa.Connection, tenant: str, statuses: tuple[str, ...] = LISTED
) -> list[Withheld]:
    """The changes the tenant's last applied sync withheld (sync.withheld), with decisions."""
    rows = conn.execute(db.q("load/withheld"), {"tenant": tenant, "statuses": list(statuses)})
    return [Withheld(**r._mapping) for r in rows]


def unnotified(conn: sa.Connection, settings: TenantSettings) -> list[str]:
    """Held changes the tenant's admin was not emailed about yet, as lines; marks them
    notified (in the caller's transaction: commit after the email went out)."""
    params = {"tenant": settings.slug}
    new = {(r.kind, r.key) for r in conn.execute(db.q("load/held_unnotified"), params)}
    rows = [
        w for w in withheld(conn, settings.slug, ("held", "app_decision")) if (w.kind, w.key) in new
    ]
    conn.execute(db.q("load/held_notified"), params)
    return [line(w, settings) for w in rows]


def line(w: Withheld, settings: TenantSettings) -> str:
    """One withheld change for a list: who (and in which group), then its sentence."""
    where = f" in {w.group}" if w.group else ""
    return f"{w.email or w.label}{where}: {sentence(w, settings.timezone, settings)}"


def local_time(t: dt.datetime | None, zone: str, missing: str = "?") -> str:
    """A time in the tenant's zone, as every list of withheld changes shows it."""
    from zoneinfo import ZoneInfo

    return t.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") if t else missing


def run_rows(conn: sa.Connection, tenant: str, run_id: int, limit: int = 200) -> list[Withheld]:
    """The changes run_id's gate withheld (listed statuses), for that run's report."""
    params = {"tenant": tenant, "run_id": run_id, "statuses": list(LISTED), "limit": limit}
    return [Withheld(**r._mapping) for r in conn.execute(db.q("load/gate_rows"), params)]


def sentence(w: Withheld, zone: str, settings: TenantSettings) -> str:
    """What explain and the report say about one withheld change, in the tenant's zone."""

    def at(t: dt.datetime | None) -> str:
        return local_time(t, zone)

    why = REASONS.get(w.reason or "", w.reason or "")
    if w.kind == "deactivate" and w.status == "pending":
        left = max(settings.deactivation_grace_reads - (w.reads or 0), 0)
        reads = f" and {left} more complete read(s) out of scope" if left else ""
        return (
            f"pending deactivation since {at(w.since)}, will be deactivated at the first sync "
            f"after {at(w.due_at)}{reads}, because {why}"
        )
    if w.kind == "deactivate" and w.status == "held":
        return (
            f"deactivation held since {at(w.held_since)} (the sync's deactivations were over "
            f"the safety limit), out of scope since {at(w.since)} because {why}; "
            f"`sync-pipeline approve {settings.slug} {w.label}` deactivates them at the next sync"
        )
    if w.kind == "deactivate" and w.status == "protected":
        return f"protected (protected_users): never deactivated by the sync, although {why}"
    if w.status == "rejected":
        return (
            f"{w.kind.replace('_', ' ')} rejected by {w.decided_by}: kept as it is in the app "
            "while Graph keeps asking for it"
        )
    if w.status == "app_decision":
        return (
            f"{w.kind.replace('_', ' ')} not done: {w.reason}; the sync leaves the app's own "
            f"decision alone (`sync-pipeline approve {settings.slug} {w.label}` to let it)"
        )
    if w.status == "held":
        return f"{w.kind.replace('_', ' ')} held: {w.reason}"
    if w.status == "address_in_use":
        return (
            f"{w.kind} waits: {w.reason}; it is made by the first sync after that person is "
            "deactivated or gives the address up"
        )
    return f"{w.kind.replace('_', ' ')} {w.status} ({w.reason})"


# Why a person is out of scope, in words (the snapshot's reason codes, transform/rules.py).
REASONS = {
    "not_in_graph": "they are no longer in Graph (deleted)",
    "soft_deleted": "they are deleted in Entra ID (restorable for 30 days)",
    "out_of_scope": "they are in none of the scope groups (user_scope selected_groups)",
    "disabled": "their account is disabled in Entra ID",
    "guest": "they are a guest (include_guests is false)",
    "mailbox_type": "their mailbox is not a person's (exclude_mailbox_types)",
    "unlicensed": "they have no licence (exclude_unlicensed)",
    "no_email": "they have no usable address (email_method)",
    "deny_list": "their address is on the deny list",
    "duplicate_email": "another user took their address",
}
