"""What a Graph call costs in resource units (the table in docs/graph.md).

Written separately from the client's table (`sync_pipeline/graph/budget.py`) on purpose: the
fake is the referee the client is tested against. `sync_pipeline_tests/test_cost_table.py`
holds both to the documented table.
"""

from __future__ import annotations

from collections.abc import Mapping

# Base resource-unit costs, as Microsoft's `concepts/throttling-limits.md` ("Identity and
# access service limits") lists them; `*` is one id segment. Costs given for `me/...` apply to
# `users/{id}/...` as well (the page's note). Everything else costs 1: `users/{id}`,
# `users/delta` and `users/$count` included (only the `GET users` list costs 2).
# `users/{id}/mailboxSettings/userPurpose` is an Outlook (Exchange) read, which the identity
# table does not list and Outlook limits per app and mailbox instead (10,000 requests per 10
# minutes, 4 at once): the fake still charges it 1 unit of the directory budget, never less
# than Graph asks.
BASE_COSTS: dict[tuple[str, tuple[str, ...]], int] = {
    ("GET", ("applications",)): 2,
    ("GET", ("applications", "*", "extensionProperties")): 2,
    ("GET", ("contracts",)): 3,
    ("POST", ("directoryObjects", "getByIds")): 3,
    ("GET", ("domains", "*", "domainNameReferences")): 4,
    ("POST", ("getObjectsById",)): 3,
    ("GET", ("groups", "*", "members")): 3,
    ("GET", ("groups", "*", "transitiveMembers")): 5,
    ("POST", ("isMemberOf",)): 4,
    ("POST", ("users", "*", "checkMemberGroups")): 4,
    ("POST", ("users", "*", "checkMemberObjects")): 4,
    ("POST", ("users", "*", "getMemberGroups")): 2,
    ("POST", ("users", "*", "getMemberObjects")): 2,
    ("GET", ("users", "*", "licenseDetails")): 2,
    ("GET", ("users", "*", "memberOf")): 2,
    ("GET", ("users", "*", "ownedObjects")): 2,
    ("GET", ("users", "*", "transitiveMemberOf")): 2,
    ("GET", ("oauth2PermissionGrants",)): 2,
    ("GET", ("oauth2PermissionGrants", "*")): 2,
    ("GET", ("servicePrincipals", "*", "appRoleAssignments")): 2,
    ("GET", ("subscribedSkus",)): 3,
    ("GET", ("users",)): 2,
}


def cost(method: str, path: str, opts: Mapping[str, str]) -> int:
    """What Graph charges: the base cost, `$select` -1, `$expand` +1, `$top` below 20 -1,
    never below 1 (throttling-limits.md, "Other factors that affect a request cost")."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["me"]:
        parts = ["users", "*", *parts[1:]]
    shape = tuple("*" if i == 1 and len(parts) > 1 else p for i, p in enumerate(parts))
    cost = BASE_COSTS.get((method, tuple(parts)), BASE_COSTS.get((method, shape), 1))
    if "$select" in opts:
        cost -= 1
    if "$expand" in opts:
        cost += 1
    try:
        if int(opts.get("$top", "")) < 20:
            cost -= 1
    except ValueError:
        pass
    return max(1, cost)
