"""The app's permissions: which one each Graph read needs, withdrawing and granting them
(admin consent revoked), and hidden-membership groups (Member.Read.Hidden)."""

from __future__ import annotations

from sync_pipeline.fakegraph.base import _FakeBase
from sync_pipeline.fakegraph.mutations import _Tenant
from sync_pipeline.fakegraph.wire import GraphError


class _Permissions(_FakeBase):
    """Permissions withdrawn per tenant, and the 403s they cause."""

    # The application permission each Graph read needs (the least-privileged one the Graph
    # reference names); a withdrawn one makes those reads 403 `Authorization_RequestDenied`,
    # with Graph's own message, which does not say which permission is missing.
    PERMISSIONS = (
        ("/applications", "Application.Read.All"),
        ("/subscribedSkus", "Organization.Read.All"),
        ("/organization", "Organization.Read.All"),
        ("/groups", "GroupMember.Read.All"),
        ("/users", "User.Read.All"),
    )
    # Listing the members of a hidden-membership group (`visibility: HiddenMembership`, some
    # Microsoft 365 groups) needs this one besides GroupMember.Read.All (the note in
    # group-list-members.md and group-list-transitivemembers.md). Which status Graph answers
    # without it is not documented: the fake answers 403 Authorization_RequestDenied to
    # `/groups/{id}/members` and `/transitiveMembers` (and their `$count`). In a groups delta
    # round with `members` selected, Microsoft documents nothing either; the fake takes the
    # harder plausible reading: the group's entry comes without `members@delta`, silently,
    # exactly as for a group with no members (as `memberOf` is known to leave hidden groups out
    # without an error), so a client cannot trust a delta round for those groups' members.
    # Simplification: a parent's transitiveMembers still list a hidden group's members.
    HIDDEN_MEMBERS = "Member.Read.Hidden"
    # A user's mailboxSettings (userPurpose among them) needs MailboxSettings.Read, not
    # User.Read.All (user-get-mailboxsettings.md). Without it Exchange answers 403
    # ErrorAccessDenied (its own code, not the directory's Authorization_RequestDenied).
    MAILBOX_SETTINGS = "MailboxSettings.Read"
    # Reading the app registration (its secrets' expiry dates) needs Application.Read.All,
    # which the sync itself does not: not granted until a test grants it, as in a tenant set
    # up by the README.
    NOT_GRANTED = frozenset({"Application.Read.All"})

    def _withheld(self, tenant_id: str) -> set[str]:
        """The permissions the tenant's app does not have: those withdrawn, and those not
        granted by default unless a test granted them (the lock held)."""
        extra = self._granted_extra.get(tenant_id, set())
        return self._withdrawn.get(tenant_id, set()) | (self.NOT_GRANTED - extra)

    def granted_permissions(self, tenant_id: str) -> list[str]:
        """The application permissions the tenant's app holds: its tokens' `roles`."""
        known = {p for _, p in self.PERMISSIONS} | {self.HIDDEN_MEMBERS, self.MAILBOX_SETTINGS}
        with self._lock:
            return sorted(known - self._withheld(tenant_id))

    def withdraw_permissions(self, tenant_id: str, permissions: list[str]) -> list[str]:
        """Take permissions away from the tenant's app (admin consent revoked for them);
        returns every permission now withdrawn."""
        known = {p for _, p in self.PERMISSIONS} | {self.HIDDEN_MEMBERS, self.MAILBOX_SETTINGS}
        unknown = sorted(set(permissions) - known)
        if unknown:
            raise ValueError(f"unknown permission(s) {unknown}; known: {sorted(known)}")
        with self._lock:
            self._tenant(tenant_id)
            withdrawn = self._withdrawn.setdefault(tenant_id, set())
            withdrawn.update(permissions)
            self._granted_extra.setdefault(tenant_id, set()).difference_update(permissions)
            return sorted(withdrawn)

    def grant_permissions(self, tenant_id: str, permissions: list[str]) -> list[str]:
        """Give withdrawn permissions back; returns every permission still withdrawn."""
        with self._lock:
            self._tenant(tenant_id)
            withdrawn = self._withdrawn.setdefault(tenant_id, set())
            withdrawn.difference_update(permissions)
            extra = self._granted_extra.setdefault(tenant_id, set())
            extra.update(set(permissions) & self.NOT_GRANTED)
            return sorted(withdrawn)

    def _require_permission(self, tenant: _Tenant, path: str) -> None:
        withdrawn = self._withheld(tenant.tenant_id)
        if path.startswith("/users/") and "/mailboxSettings" in path:
            if self.MAILBOX_SETTINGS in withdrawn:
                raise GraphError(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            return
        for prefix, permission in self.PERMISSIONS:
            if path.startswith(prefix) and permission in withdrawn:
                raise GraphError(
                    403,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                )

    def _members_hidden(self, tenant: _Tenant, gid: str) -> bool:
        """True when the app may not list this group's members (see HIDDEN_MEMBERS)."""
        group = tenant.groups.get(gid) or {}
        withdrawn = self._withdrawn.get(tenant.tenant_id, set())
        return group.get("visibility") == "HiddenMembership" and self.HIDDEN_MEMBERS in withdrawn
