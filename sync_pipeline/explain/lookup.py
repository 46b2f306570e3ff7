"""Why is this person (not) synced? The answer read from the tenant's snapshot and staging.

`lookup` finds every Graph user matching an address or UPN (case-insensitive: UPN, mail, any
proxy address, the resolved address, or the Graph id) and returns, for each, what the app will
hold (address, groups, manager) or every reason it is left out, each in a sentence. The
sentences name the setting to change. No Dagster imports (ground floor).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.transform import addresses, unreadable


@dataclass(frozen=True)
class GroupLanding:
    graph_id: str
    name: str
    kind: str
    mapped_to: str | None

    @property
    def label(self) -> str:
        if self.mapped_to:
            return f"{self.mapped_to} (app group, mapped from {self.name})"
        return self.name


@dataclass
class Explanation:
    graph_id: str
    upn: str | None
    mail: str | None
    display_name: str | None
    in_snapshot: bool  # False: extracted, but no transform has run since
    included: bool
    email: str | None
    reasons: list[str]
    sentences: list[str] = field(default_factory=list)
    groups: list[GroupLanding] = field(default_factory=list)
    manager: str | None = None
    manager_sentence: str | None = None
    winner: dict[str, Any] | None = None  # for duplicate_email: the user keeping the address
    # groups this user is in as last read whose members Graph refused this time
    unreadable: list[str] = field(default_factory=list)
    # what the deactivation gate withheld for them at the last apply (load/gate.py)
    withheld: list[str] = field(default_factory=list)
    # their mailbox type (exclude_mailbox_types), when the setting is on and it does not
    # exclude them: read and not listed, unreadable (kept), or not read yet
    mailbox_sentence: str | None = None


def _person(row: Any) -> str:
    name = row.display_name or row.graph_id
    address = row.email or row.upn
    return f"{name} <{address}>" if address else name


def _deny_entry(settings: TenantSettings, email: str | None) -> str | None:
    low = addresses.key(email)
    if not low:
        return None
    for entry in settings.email_deny_list:
        e = entry.strip()
        if addresses.key(e) == low or (
            e.startswith("*@") and low.split("@", 1)[-1] == addresses.key(e[2:])
        ):
            return entry
    return None


def _sentence(
    conn: sa.Connection, settings: TenantSettings, row: Any, reason: str, x: Explanation
) -> str:
    s = settings
    if reason == "out_of_scope":
        names = _group_names(conn, s.slug, s.scope_group_ids)
        return (
            "out_of_scope: user_scope is selected_groups and this user is not a member (directly "
            f"or through nested groups) of {', '.join(names)}; add them to one of these groups "
            "or to scope_group_ids"
        )
    if reason == "disabled":
        return (
            "disabled: the account is disabled in Entra ID (accountEnabled false); "
            "include_disabled: true would sync it"
        )
    if reason == "guest":
        return f"guest: userType is {row.user_type}; include_guests: true would sync guests"
    if reason == "mailbox_type":
        kind = row.mailbox_purpose
        return (
            f"mailbox_type: Graph's mailbox type (mailboxSettings userPurpose) is {kind!r}, "
            f"not a person's mailbox, and exclude_mailbox_types lists {kind}; take {kind} out "
            "of exclude_mailbox_types to sync it"
        )
    if reason == "unlicensed":
        return (
            "unlicensed: no licence is assigned (e.g. a shared mailbox) and exclude_unlicensed "
            "is true"
        )
    if reason == "no_email":
        found = f" (it gives {x.email!r}, not an address)" if x.email else " (it gives nothing)"
        return (
            f"no_email: email_method {s.email_method} finds no usable address{found}; "
            f"UPN {row.upn!r}, mail {row.mail!r}; another email_method may find one"
        )
    if reason == "deny_list":
        entry = _deny_entry(s, x.email)
        return f"deny_list: {x.email} matches the email_deny_list entry {entry!r}"
    if reason == "duplicate_email":
        if x.winner:
            return (
                f"duplicate_email: {x.winner['who']} (Graph id {x.winner['graph_id']}) resolves "
                f"to the same address {x.email} and wins (enabled, then licensed, then earliest "
                "created, then lowest id)"
            )
        return f"duplicate_email: another user resolves to the same address {x.email}"
    return f"{reason}: left out by the rule {reason!r}"


def _group_names(conn: sa.Connection, tenant: str, ids: list[str]) -> list[str]:
    found = conn.execute(db.q("explain/group_names"), {"tenant": tenant, "ids": ids}).all()
    names: dict[str, str] = dict(found)
    return [f"{names[i]!r}" if i in names else f"{i} (not in Graph)" for i in ids]


def extracted_at(conn: sa.Connection, tenant: str) -> dt.datetime | None:
    return conn.execute(db.q("explain/extracted_at"), {"tenant": tenant}).scalar()


def lookup(conn: sa.Connection, settings: TenantSettings, query: str) -> list[Explanation]:
    """Every Graph user of the tenant's latest extraction matching `query`, explained."""
    tenant = settings.slug
    out = []
    for row in conn.execute(db.q("explain/find"), {"tenant": tenant, "q": query}):
        x = Explanation(
            graph_id=row.graph_id,
            upn=row.upn,
            mail=row.mail,
            display_name=row.display_name,
            in_snapshot=row.included is not None,
            included=bool(row.included),
            email=row.email,
            reasons=list(row.reasons or ([row.reason] if row.reason else [])),
        )
        if "duplicate_email" in x.reasons and x.email:
            win = conn.execute(
                db.q("explain/address_holder"), {"tenant": tenant, "email": x.email}
            ).first()
            if win is not None:
                x.winner = {"graph_id": win.graph_id, "who": _person(win), "upn": win.upn}
        x.sentences = [_sentence(conn, settings, row, r, x) for r in x.reasons]
        x.unreadable = [g.sentence for g in unreadable.of_user(conn, tenant, row.graph_id)]
        x.withheld = withheld_sentences(conn, settings, graph_id=row.graph_id)
        if "mailbox_type" not in x.reasons:
            x.mailbox_sentence = mailbox_sentence(settings, row)
        if x.included:
            x.groups = [
                GroupLanding(g.graph_id, g.name, g.group_kind, g.mapped_to)
                for g in conn.execute(
                    db.q("explain/groups"), {"tenant": tenant, "user_id": row.graph_id}
                )
            ]
            _manager(conn, settings, row, x)
        out.append(x)
    return out


def mailbox_sentence(settings: TenantSettings, row: Any) -> str | None:
    """A person's mailbox type in words, when exclude_mailbox_types is set and it does not
    exclude them (None when the setting is empty)."""
    types = ", ".join(settings.exclude_mailbox_types)
    if not types:
        return None
    if row.purpose_status == "unreadable":
        return (
            f"mailbox type could not be read (Graph answered {row.purpose_code}: no Exchange "
            f"Online mailbox); exclude_mailbox_types ({types}) leaves out only people whose "
            "type Graph gives, so this person is kept"
        )
    if row.mailbox_purpose:
        return (
            f"mailbox type {row.mailbox_purpose!r} (mailboxSettings userPurpose) is not in "
            f"exclude_mailbox_types ({types})"
        )
    return f"mailbox type not read yet: the next sync reads it (exclude_mailbox_types: {types})"


def withheld_sentences(
    conn: sa.Connection,
    settings: TenantSettings,
    *,
    graph_id: str | None = None,
    email: str | None = None,
) -> list[str]:
    """What the gate withheld for one person (by Graph id, or by app address for someone no
    longer in Graph), each as a sentence in the tenant's zone."""
    from sync_pipeline.load import gate

    rows = conn.execute(
        db.q("explain/withheld"), {"tenant": settings.slug, "graph_id": graph_id, "email": email}
    )
    keys = {(r.kind, r.key) for r in rows}
    return [
        gate.sentence(w, settings.timezone, settings)
        for w in gate.withheld(conn, settings.slug)
        if (w.kind, w.key) in keys
    ]


def _manager(conn: sa.Connection, settings: TenantSettings, row: Any, x: Explanation) -> None:
    if not settings.import_managers:
        x.manager_sentence = "managers are not imported (import_managers is false)"
        return
    if row.manager_graph_id:
        m = conn.execute(
            db.q("explain/user"), {"tenant": settings.slug, "user_id": row.manager_graph_id}
        ).first()
        x.manager = _person(m) if m else row.manager_graph_id
        return
    note = row.manager_note or ""
    graph_manager = conn.execute(
        db.q("explain/manager"), {"tenant": settings.slug, "user_id": row.graph_id}
    ).scalar()
    if note.startswith("manager_excluded"):
        m = conn.execute(
            db.q("explain/user"), {"tenant": settings.slug, "user_id": graph_manager}
        ).first()
        who = _person(m) if m else graph_manager
        why = note.partition(":")[2] or "excluded"
        x.manager_sentence = f"none in the app: the Graph manager {who} is not synced ({why})"
    elif note.startswith("manager_cycle"):
        x.manager_sentence = _cycle_sentence(conn, settings.slug, note.partition(":")[2].split())
    elif note == "manager_not_found":
        x.manager_sentence = (
            f"none in the app: the Graph manager {graph_manager} is not among the tenant's users"
        )
    elif note:
        x.manager_sentence = f"none in the app ({note})"
    else:
        x.manager_sentence = "none: Graph has no manager for this user"


# The rule the transform applies to a manager cycle (sql/transform/users.sql, docs/checks.md).
CYCLE_RULE = (
    "in a manager cycle the member with the lowest Graph id keeps no manager, the others keep "
    "theirs"
)


def _cycle_sentence(conn: sa.Connection, tenant: str, cycle: list[str]) -> str:
    """The cut link in words: the cycle by name, in manager order from the user whose link was
    cut (the note's ids), and the rule."""
    people = []
    for graph_id in cycle:
        m = conn.execute(db.q("explain/user"), {"tenant": tenant, "user_id": graph_id}).first()
        people.append(_person(m) if m else graph_id)
    ring = " → ".join([*people, people[0]]) if people else "?"
    cut = f"{people[0]} to {people[1 % len(people)]}" if people else "this user"
    return (
        f"none in the app: manager not imported: manager cycle {ring}; the link from {cut} "
        f"was cut (rule: {CYCLE_RULE}). Fix the managers in Entra ID to set one."
    )
