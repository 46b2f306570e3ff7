"""Entity families and their delta links: which link each family follows, and the links'
bookkeeping (read before an extraction, saved in its transaction, legacy ones dropped).

A delta link's `$select` is baked into it, so a link stored before a property joined the
select would never report that property: such links are stored under a new key, and the old
key is dropped once the tenant has been read in full under the new one.
"""

from __future__ import annotations

import sqlalchemy as sa

from sync_pipeline.core import db

USERS, GROUPS = "users", "groups"  # entity families; GROUPS is also a links key (below)
MEMBERS = "members"  # a whole read of groups' members
# A users link whose rounds carry manager@delta (v2: `manager` joined the $select, which a
# stored link keeps baked in; one stored under "users" would never report manager changes).
USERS_LINK = "users_v2"
# A groups link whose rounds carry members@delta and `visibility` (v2: since hidden-membership
# groups are told apart; a link's $select is baked into it, so one stored under an earlier key
# would never report visibility).
GROUPS_MEMBERS = "groups_members_v2"
# Links stored under "users" (no manager), GROUPS (no members, kept before members links were
# taken at every size) or "groups_members" (no visibility) are no longer followed: such a
# tenant is read in full once, and the old link is dropped.
LEGACY_LINKS = (USERS, GROUPS, "groups_members")


def stored_links(conn: sa.Connection, tenant: str) -> dict[str, str]:
    """The tenant's delta links by key (empty: no read kept one)."""
    rows = conn.execute(db.q("extract/delta_links"), {"t": tenant})
    return {str(entity): str(link) for entity, link in rows}


def save_links(conn: sa.Connection, tenant: str, links: dict[str, str]) -> None:
    """Store the links this read ended with, and drop the legacy ones (never followed)."""
    for entity, link in links.items():
        conn.execute(db.q("extract/save_delta_link"), {"t": tenant, "entity": entity, "link": link})
    for legacy in LEGACY_LINKS:
        conn.execute(db.q("extract/delete_delta_link"), {"t": tenant, "entity": legacy})
