"""Resource-unit budgets: spend Graph's directory read limits without tripping them.

Graph throttles per app per tenant (3,500 / 5,000 / 8,000 resource units per 10 s by tenant
size), per app across all tenants (150,000 units per 20 s) and, whatever the service, at most
2,000 requests per second per app across all tenants (Microsoft's `concepts/
throttling-limits.md`: the global table, and "Identity and access service limits"). Waiting
here before a request is cheaper than a 429 and its Retry-After, and keeps concurrent tenants
in one process from starving each other. Written by hand: no library offers a blocking,
thread-safe token bucket with fractional costs and two levels (tenant, app); it is 40 lines.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

TENANT_WINDOW = 10.0
APP_WINDOW = 20.0
APP_LIMIT = 150_000
# "Any request type, per app across all tenants: 2000 requests per second" (the global table of
# throttling-limits.md). Each request of a `$batch` counts, and so does the batch itself: the
# page says batched requests are evaluated individually, not whether the envelope counts, so
# the budget counts it too (the stricter reading).
APP_REQUESTS_PER_SECOND = 2_000
REQUEST_WINDOW = 1.0
# Stay a little under the limits: Graph's buckets and ours drift (clock, in-flight calls).
HEADROOM = 0.9


def tenant_limit(users: int) -> int:
    """Graph's per-app-per-tenant limit (RU per 10 s) for a tenant of this many users."""
    return 3_500 if users < 50 else 5_000 if users <= 500 else 8_000


# Base costs of the identity reads Microsoft lists (throttling-limits.md, "Identity and access
# service limits", the table of base request costs), as (path pattern, units): `{id}` matches
# one segment. Costs given for `me/...` apply to `users/{id}/...` too (the page's note). Any
# other identity request costs 1: `users/{id}`, `users/delta` and `users/$count` included, as
# only the `GET users` list costs 2.
BASE_COSTS: tuple[tuple[str, str, int], ...] = (
    ("GET", "applications", 2),
    ("GET", "applications/{id}/extensionProperties", 2),
    ("GET", "contracts", 3),
    ("POST", "directoryObjects/getByIds", 3),
    ("GET", "domains/{id}/domainNameReferences", 4),
    ("POST", "getObjectsById", 3),
    ("GET", "groups/{id}/members", 3),
    ("GET", "groups/{id}/transitiveMembers", 5),
    ("POST", "isMemberOf", 4),
    ("POST", "users/{id}/checkMemberGroups", 4),
    ("POST", "users/{id}/checkMemberObjects", 4),
    ("POST", "users/{id}/getMemberGroups", 2),
    ("POST", "users/{id}/getMemberObjects", 2),
    ("GET", "users/{id}/licenseDetails", 2),
    ("GET", "users/{id}/memberOf", 2),
    ("GET", "users/{id}/ownedObjects", 2),
    ("GET", "users/{id}/transitiveMemberOf", 2),
    ("GET", "oauth2PermissionGrants", 2),
    ("GET", "oauth2PermissionGrants/{id}", 2),
    ("GET", "servicePrincipals/{id}/appRoleAssignments", 2),
    ("GET", "subscribedSkus", 3),
    ("GET", "users", 2),
)
_BASE = {(method, tuple(pattern.split("/"))): units for method, pattern, units in BASE_COSTS}
SMALL_TOP = 20  # "$top with a value of less than 20 decreases cost by 1"


def _base_cost(method: str, parts: list[str]) -> int:
    if parts and parts[0] == "me":
        parts = ["users", "{id}", *parts[1:]]
    for i in range(len(parts) + 1):  # the id segment may be in any position: try each
        shape = tuple("{id}" if j == i else p for j, p in enumerate(parts))
        units = _BASE.get((method.upper(), shape))
        if units is not None:
            return units
    return 1


def cost(method: str, url: str, params: dict[str, Any] | None = None) -> int:
    """Resource units of one call, as throttling-limits.md lists them: the base cost of its
    path, `$select` -1, `$expand` +1, `$top` under 20 -1, never below 1."""
    split = urlsplit(url)
    parts = [p for p in split.path.split("/") if p]
    if parts and parts[0] == "v1.0":
        parts = parts[1:]
    options = {k.lower(): v[-1] for k, v in parse_qs(split.query).items()}
    options |= {k.lower(): str(v) for k, v in (params or {}).items()}
    units = _base_cost(method, parts)
    if "$select" in options:
        units -= 1
    if "$expand" in options:
        units += 1
    top = options.get("$top", "")
    if top.strip().isdigit() and int(top) < SMALL_TOP:
        units -= 1
    return max(1, units)


class Bucket:
    """A blocking token bucket: `capacity` units refilled evenly over `window` seconds."""

    def __init__(self, capacity: float, window: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window
        self.level = capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def reserve(self, units: float) -> float:
        """Take `units` now (the level may go negative); returns how long to wait first."""
        with self.lock:
            self._refill(time.monotonic())
            self.level -= min(units, self.capacity)
            return 0.0 if self.level >= 0 else -self.level / self.rate


class Budget:
    """One tenant's bucket plus the process-wide buckets of its app (client id): resource
    units, and requests per second."""

    _apps: dict[str, Bucket] = {}
    _rates: dict[str, Bucket] = {}
    _apps_lock = threading.Lock()

    def __init__(
        self,
        client_id: str,
        users: int = 1_000,
        scale: float = 1.0,
        requests_per_second: float = APP_REQUESTS_PER_SECOND,
    ) -> None:
        """`requests_per_second` sets the app's request bucket when this process makes it
        (the first Budget of this client id): tests use a lower ceiling."""
        self.tenant = Bucket(tenant_limit(users) * HEADROOM * scale, TENANT_WINDOW)
        with Budget._apps_lock:
            app = Budget._apps.get(client_id)
            if app is None:
                app = Budget._apps[client_id] = Bucket(APP_LIMIT * HEADROOM, APP_WINDOW)
            rate = Budget._rates.get(client_id)
            if rate is None:
                capacity = max(1.0, requests_per_second * HEADROOM * REQUEST_WINDOW)
                rate = Budget._rates[client_id] = Bucket(capacity, REQUEST_WINDOW)
        self.app = app
        self.requests = rate

    def resize(self, users: int) -> None:
        """Adopt the limit of the tenant's real size once $count has told it."""
        capacity = tenant_limit(users) * HEADROOM
        with self.tenant.lock:
            ratio = capacity / self.tenant.capacity
            self.tenant.capacity = capacity
            self.tenant.rate *= ratio

    def spend(self, units: float, requests: int = 1) -> float:
        """Block until `units` fit in both unit buckets and `requests` (a `$batch`: its items
        and itself) in the app's request bucket; returns the seconds waited."""
        wait = max(
            self.tenant.reserve(units),
            self.app.reserve(units),
            self.requests.reserve(requests),
        )
        if wait > 0:
            time.sleep(wait)
        return wait
