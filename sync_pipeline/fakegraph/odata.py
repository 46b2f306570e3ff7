"""OData query options and projections: which properties Graph returns by default and
accepts in `$select`, `$expand=manager(...)`, `$skiptoken` paging state, and how a user,
group or other object is rendered for a `$select`.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

from sync_pipeline.fakegraph.generator import GROUP_KEYS, USER_KEYS
from sync_pipeline.fakegraph.wire import _bad, _unb64url_json

USER_DEFAULT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
_USER_EMPTY_LISTS = frozenset(
    {
        "businessPhones",
        "otherMails",
        "proxyAddresses",
        "assignedLicenses",
        "assignedPlans",
        "imAddresses",
    }
)
USER_PROPS = (
    frozenset(USER_KEYS)
    | frozenset(USER_DEFAULT)
    | frozenset(
        {
            "mailNickname",
            "usageLocation",
            "employeeType",
            "city",
            "country",
            "state",
            "streetAddress",
            "postalCode",
            "onPremisesImmutableId",
            "onPremisesSamAccountName",
            "onPremisesDomainName",
            "onPremisesUserPrincipalName",
            "onPremisesLastSyncDateTime",
            "externalUserState",
            "creationType",
            "ageGroup",
            "employeeHireDate",
            "faxNumber",
            "imAddresses",
            "assignedPlans",
            "lastPasswordChangeDateTime",
            "deletedDateTime",
            "preferredDataLocation",
            "showInAddressList",
            "securityIdentifier",
        }
    )
)
GROUP_PROPS = frozenset(GROUP_KEYS) | frozenset(
    {
        "visibility",
        "classification",
        "onPremisesSyncEnabled",
        "proxyAddresses",
        "renewedDateTime",
        "securityIdentifier",
        "expirationDateTime",
        "isAssignableToRole",
        "membershipRuleProcessingState",
        "deletedDateTime",
        "preferredDataLocation",
        "theme",
    }
)
MAX_TOP = 999
MAX_TOP_EXPAND = 100
DEFAULT_TOP = 100
_ODATA_NEXT = "@odata.nextLink"
_ID_ONLY = ["id"]


def _decode_skiptoken(token: str, path: str, tenant_id: str) -> int:
    try:
        state = _unb64url_json(token)
        if state.get("p") == path and state.get("t") == tenant_id:
            return max(0, int(state["o"]))
    except (ValueError, binascii.Error, KeyError, TypeError, AttributeError):
        pass
    raise _bad("Invalid $skiptoken.")


def _select(opts: Mapping[str, str], allowed: frozenset[str] | set[str] | None) -> list[str] | None:
    raw = opts.get("$select")
    if raw is None:
        return None
    props = [p.strip() for p in raw.split(",") if p.strip()]
    if allowed is not None:
        for prop in props:
            if prop not in allowed:
                raise _bad(
                    f"Could not find a property named '{prop}' on type "
                    "'microsoft.graph.directoryObject'."
                )
    return props


def _expand(opts: Mapping[str, str]) -> list[str] | None:
    """`$expand=manager(...)` → the manager's selected properties (default: all)."""
    raw = opts.get("$expand")
    if raw is None:
        return None
    raw = raw.strip()
    name, _, rest = raw.partition("(")
    if name.strip() != "manager" or "," in raw.split("(")[0]:
        raise _bad(
            f"Expansion of '{name.strip()}' is not supported; only 'manager' can be expanded, once."
        )
    select: list[str] | None = None
    if rest:
        for part in rest.rstrip(")").split(";"):
            key, _, value = part.partition("=")
            key = key.strip().lstrip("$").lower()
            if key == "select":
                select = [p.strip() for p in value.split(",") if p.strip()]
            elif key == "levels":
                if value.strip() not in ("1", "max"):
                    raise _bad(f"Invalid $levels value '{value}'.")
            else:
                raise _bad(f"Query option '${key}' is not allowed inside $expand.")
    return select if select is not None else list(USER_DEFAULT)


def _context(base: str, entity: str, select: list[str] | None) -> str:
    suffix = f"({','.join(select)})" if select else ""
    return f"{base}/v1.0/$metadata#{entity}{suffix}"


def _project_user(user: Mapping[str, Any], select: list[str] | None) -> dict:
    keys = USER_DEFAULT if select is None else select
    out = {}
    for k in keys:
        value = user.get(k)
        if value is None and k in _USER_EMPTY_LISTS:
            value = []
        out[k] = value
    return out


def _project_plain(obj: Mapping[str, Any], select: list[str] | None) -> dict:
    if select is None:
        return dict(obj)
    return {k: obj.get(k) for k in select}
