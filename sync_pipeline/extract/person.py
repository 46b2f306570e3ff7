"""One person read from Graph now, for `sync-pipeline sync TENANT --user EMAIL_OR_UPN`.

The read stages exactly what a delta round would stage for that person, so the transform
and the diff that follow decide by the tenant's ordinary rules:
- the user whole by id (`/users/{id}`, `$expand=manager`): their row, licences and manager
  link, as a whole read by id in an incremental round stages them (user_writes.py);
- their direct groups (`/users/{id}/memberOf`, user-list-memberof.md), which the staged
  nesting (staging.group_members) carries up through the groups above them, as it does for
  everyone. Only groups staging already holds are joined: a group created since the last
  read is named and left to the next sync (staging it would change other people's rows).
  Hidden-membership groups, and groups whose members the last read could not list, keep the
  person's staged membership as last read (Graph leaves hidden groups out of `memberOf`
  without saying so: their members come only from `/groups/{id}/members`).

Nothing else is touched: the delta links stay where they are (the next delta round lists
this person's change again, and staging it twice changes nothing), the tenant's last complete
read keeps its time (staleness), and no `$count` is reconciled. The staging triggers record
the person's keys in sync.touched as for any write, so the transform recomputes them (and
whoever shares an address with them) incrementally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.extract.pager import MAX_PAGE, USER_URL, manager_change
from sync_pipeline.extract.purposes import read_purposes
from sync_pipeline.extract.staging import (
    GraphDataError,
    StagingWriter,
    licence_rows,
    staged_objects,
    user_row,
)
from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.errors import GraphError

GROUP_TYPE = "#microsoft.graph.group"
HIDDEN_MEMBERSHIP = "HiddenMembership"
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


class PersonNotFound(LookupError):
    """The address or id names no user in Graph (or several staged ones): bad input."""


@dataclass
class PersonRead:
    """What the read found and staged, for the run's metadata and the command's output."""

    asked: str
    graph_id: str
    upn: str | None
    display_name: str | None
    enabled: bool | None
    new: bool  # not staged before this read
    manager_id: str | None
    manager_staged: bool  # the manager is a staged user (a new manager waits for a sync)
    groups: list[str] = field(default_factory=list)  # direct groups now (staged ones), names
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # hidden or unreadable: as last read
    unknown_groups: list[str] = field(default_factory=list)  # ids staging does not hold yet
    requests: int = 0
    # exclude_mailbox_types set: their mailbox type as staged now ("" when not read)
    mailbox_type: str = ""

    def metadata(self) -> dict[str, str | int | bool]:
        """What the read found, for the run's metadata (the lists as text: `sync --user`
        prints them after the run)."""
        return {
            "person": self.asked,
            "person_graph_id": self.graph_id,
            "person_upn": self.upn or "",
            "person_enabled": bool(self.enabled),
            "person_new": self.new,
            "person_manager": self.manager_id or "",
            "person_manager_staged": self.manager_staged,
            "person_groups": _names(self.groups),
            "person_groups_joined": _names(self.joined),
            "person_groups_left": _names(self.left),
            "person_groups_kept": _names(self.kept),
            "person_groups_not_read_yet": _names(self.unknown_groups),
            "person_requests": self.requests,
            "person_mailbox_type": self.mailbox_type,
        }


def _names(items: list[str]) -> str:
    return "; ".join(items)


def staged_id(conn: sa.Connection, tenant: str, who: str) -> str | None:
    """The Graph id of the one staged user `who` names (None: none; several: PersonNotFound)."""
    rows = conn.execute(db.q("extract/person_find"), {"t": tenant, "who": who}).all()
    if len(rows) > 1:
        names = ", ".join(str(r.user_principal_name or r.id) for r in rows)
        raise PersonNotFound(
            f"tenant {tenant}: {who!r} matches {len(rows)} users ({names}); give the UPN or "
            "the Graph id of the one to sync"
        )
    return str(rows[0].id) if rows else None


def read_person(
    client: GraphClient,
    conn: sa.Connection,
    tenant: str,
    who: str,
    *,
    mailbox_types: bool = False,
) -> PersonRead:
    """Read the person `who` names (Graph id, UPN, or an address staging knows) and stage
    them in `conn`'s transaction (see the module doc). The caller holds the tenant lock.
    `mailbox_types` (exclude_mailbox_types is set): their mailbox type too, when due."""
    who = who.strip()
    staged = staged_id(conn, tenant, who)
    if staged is None and "@" not in who and not _GUID.fullmatch(who):
        raise PersonNotFound(
            f"tenant {tenant}: {who!r} is not an address or a Graph id; give the person's UPN "
            "(name@domain), mail address or Graph object id"
        )
    key = staged or who
    before = client.stats.requests
    try:
        user = client.get(USER_URL.format(quote(key, safe="")))
    except GraphError as exc:
        if exc.status != 404:
            raise
        raise PersonNotFound(
            f"tenant {tenant}: Graph has no user {who!r}"
            + (
                " any more (deleted since the last read): the next sync deactivates them "
                "by the tenant's rules"
                if staged
                else "; Graph finds a new user by UPN or Graph id, not by a mail address alone"
            )
        ) from None
    uid = str(user.get("id") or "")
    if not uid:
        raise GraphDataError(f"tenant {tenant}: Graph returned user {key!r} without an id")
    listed: list[str] = []
    for page in client.collection(
        f"/users/{quote(uid, safe='')}/memberOf", params={"$select": "id", "$top": MAX_PAGE}
    ):
        listed += [str(o["id"]) for o in page if o.get("@odata.type") == GROUP_TYPE and o.get("id")]
    said, manager = manager_change(user)
    # by id, through the primary key (staged_id matches addresses too: a scan of the users)
    known_ids = set(staged_objects(conn, tenant, "users", [uid, *([manager] if manager else [])]))
    read = PersonRead(
        asked=who,
        graph_id=uid,
        upn=user.get("userPrincipalName"),
        display_name=user.get("displayName"),
        enabled=user.get("accountEnabled"),
        new=uid not in known_ids,
        manager_id=manager if said else None,
        manager_staged=bool(manager) and str(manager) in known_ids,
    )
    rows = conn.execute(
        db.q("extract/person_groups"), {"t": tenant, "id": uid, "listed": listed}
    ).all()
    known = {r.id for r in rows}
    read.unknown_groups = [g for g in listed if g not in known]
    for r in rows:
        name = str(r.display_name or r.id)
        if r.visibility == HIDDEN_MEMBERSHIP or r.unreadable:
            if r.staged:
                read.kept.append(name)
                read.groups.append(name)
            continue
        if r.listed:
            read.groups.append(name)
            if not r.staged:
                read.joined.append(r.id)
        elif r.staged:
            read.left.append(r.id)
    names = {r.id: str(r.display_name or r.id) for r in rows}
    w = StagingWriter(conn, tenant)
    for statement in ("delete_users", "delete_user_licences", "delete_user_managers"):
        w.delete(statement, [uid])
    w.copy("users", [user_row(tenant, user)])
    w.copy("user_licences", licence_rows(tenant, user))
    if said and manager:
        w.copy("user_managers", [(tenant, uid, manager)])
    w.delete_pairs([(g, uid) for g in read.left])
    w.copy("group_members", [(tenant, g, uid, "user") for g in read.joined])
    conn.execute(db.q("extract/person_counts"), {"t": tenant})
    if mailbox_types:
        read_purposes(client, conn, tenant, only=[uid])
        row = conn.execute(db.q("extract/person_purpose"), {"t": tenant, "id": uid}).first()
        if row is not None:
            read.mailbox_type = row.purpose or f"unreadable ({row.code})"
    read.joined = [names[g] for g in read.joined]
    read.left = [names[g] for g in read.left]
    read.requests = client.stats.requests - before
    return read
