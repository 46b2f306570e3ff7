"""Graph and sign-in errors that say what went wrong, where, and what to do next.

Branch on Graph's `code`, never on its message (docs/graph.md). Messages never carry secrets or
tokens; they carry the request-id so support can trace a call.
"""

from __future__ import annotations

import re

# The permission each kind of read needs, to name it when Graph says 403.
PERMISSION_FOR_PATH = (
    ("/mailboxSettings", "MailboxSettings.Read"),
    ("/subscribedSkus", "Organization.Read.All"),
    ("/members", "GroupMember.Read.All"),
    ("/transitiveMembers", "GroupMember.Read.All"),
    ("/groups", "GroupMember.Read.All"),
    ("/users", "User.Read.All"),
)

# Listing the members of a hidden-membership group (visibility HiddenMembership) needs this
# one too (the note in Microsoft's group-list-members.md and group-list-transitivemembers.md).
MEMBER_READ_HIDDEN = "Member.Read.Hidden"
# Reading a person's mailboxSettings (userPurpose: setting exclude_mailbox_types) needs this
# one (user-get-mailboxsettings.md, least privileged for application and delegated).
MAILBOX_SETTINGS_READ = "MailboxSettings.Read"
_MEMBER_READS = ("/members", "/transitiveMembers")

_AADSTS = re.compile(r"AADSTS\d+")


def permission_for(path: str) -> str:
    for fragment, permission in PERMISSION_FOR_PATH:
        if fragment in path:
            return permission
    return "User.Read.All"


def permission_hint(path: str, kind: str) -> str:
    """What to grant when Graph answers 403 to `path` (`kind`: application or delegated)."""
    hint = f"The app lacks the {kind} permission {permission_for(path)}"
    if any(fragment in path for fragment in _MEMBER_READS):
        hint += f" (or, for a hidden-membership group, {MEMBER_READ_HIDDEN})"
    return f"{hint}: add it in the app registration and grant admin consent"


class GraphError(RuntimeError):
    """A Graph call failed for good (after retries)."""

    def __init__(
        self,
        *,
        tenant: str,
        status: int | None,
        code: str,
        message: str,
        path: str,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.tenant = tenant
        self.status = status
        self.code = code
        self.path = path
        self.request_id = request_id
        self.hint = hint
        parts = [f"tenant {tenant}: Graph {path} failed"]
        if status is not None:
            parts.append(f"with HTTP {status}")
        parts.append(f"{code}: {message}")
        if request_id:
            parts.append(f"(request-id {request_id})")
        text = " ".join(parts)
        if hint:
            text += f". {hint}"
        super().__init__(text)


class GraphAuthError(GraphError):
    """Sign-in failed: msal returned an error (AADSTS code kept, secret never)."""

    def __init__(self, *, tenant: str, error: str, description: str, hint: str) -> None:
        aadsts = _AADSTS.search(description or "")
        self.aadsts = aadsts.group(0) if aadsts else None
        # The first sentence of the description: the rest carries trace ids and timestamps.
        first = (description or "").split("\r\n")[0].split(". ")[0]
        super().__init__(
            tenant=tenant, status=None, code=error, message=first, path="token", hint=hint
        )


class CredentialError(RuntimeError):
    """The tenant's credential is not available (unset variable, unreadable certificate).

    Also the base of every configuration error the preflight finds before a run: no retry
    can fix one, so runs fail at once and the CLI exits 2."""


class GraphUnreachable(CredentialError):
    """The Graph or sign-in host cannot be reached from here (refused, unknown, silent, or its
    TLS certificate is not trusted): a configuration or network problem, found before the run."""


def auth_hint(error: str, description: str) -> str:
    """What an admin should do about an msal error, from its AADSTS code."""
    if "AADSTS7000215" in description or "AADSTS7000222" in description:
        return (
            "The client secret is wrong or expired: create a new secret in the app registration "
            "and put its VALUE (not its id) in the environment variable named by client_secret_env"
        )
    if "AADSTS700016" in description:
        return "client_id is not an app registered in this directory: check client_id and tenant_id"
    if "AADSTS90002" in description:
        return "tenant_id is not a known directory: check tenant_id and authority_host"
    if "AADSTS65001" in description:
        return "Admin consent is missing: open the admin-consent link and grant the permissions"
    if error == "invalid_grant":
        return (
            "The signed-in admin's session expired or was revoked: "
            "run `sync-pipeline tenant connect`"
        )
    return "Check the tenant's auth settings (tenant_id, client_id, credential, authority_host)"
