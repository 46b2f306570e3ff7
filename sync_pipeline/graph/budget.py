"""Resource-unit budgets: spend Graph's directory read limits without tripping them.

Graph throttles per app per tenant (3,500 / 5,000 / 8,000 resource units per 10 s by tenant
size) and per app across all tenants (150,000 per 20 s). Waiting here before a request is
cheaper than a 429 and its Retry-After, and keeps concurrent tenants in one process from
starving each other. Written by hand: no library offers a blocking, thread-safe token bucket
with fractional costs and two levels (tenant, app); it is 40 lines.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

TENANT_WINDOW = 10.0
APP_WINDOW = 20.0
APP_LIMIT = 150_000
# Stay a little under the limits: Graph's buckets and ours drift (clock, in-flight calls).
HEADROOM = 0.9


def tenant_limit(users: int) -> int:
    """Graph's per-app-per-tenant limit (RU per 10 s) for a tenant of this many users."""
    return 3_500 if users < 50 else 5_000 if users <= 500 else 8_000


def cost(method: str, url: str, params: dict[str, Any] | None = None) -> int:
    """Resource units of one call, as GRAPH.md lists them."""
    split = urlsplit(url)
    parts = [p for p in split.path.split("/") if p]
    if parts and parts[0] == "v1.0":
        parts = parts[1:]
    options = {k.lower() for k in parse_qs(split.query)} | {k.lower() for k in params or {}}
    head, last = (parts[0], parts[-1]) if parts else ("", "")
    if head == "users" and (len(parts) <= 2 or last == "delta"):
        units = 2
    elif head == "groups" and last == "members":
        units = 3
    elif last == "transitiveMembers":
        units = 5
    elif head == "subscribedSkus":
        units = 3
    elif last == "licenseDetails":
        units = 2
    else:
        units = 1
    if "$select" in options:
        units -= 1
    if "$expand" in options:
        units += 1
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
    """One tenant's bucket plus the process-wide bucket of its app (client id)."""

    _apps: dict[str, Bucket] = {}
    _apps_lock = threading.Lock()

    def __init__(self, client_id: str, users: int = 1_000, scale: float = 1.0) -> None:
        self.tenant = Bucket(tenant_limit(users) * HEADROOM * scale, TENANT_WINDOW)
        with Budget._apps_lock:
            app = Budget._apps.get(client_id)
            if app is None:
                app = Budget._apps[client_id] = Bucket(APP_LIMIT * HEADROOM, APP_WINDOW)
        self.app = app

    def resize(self, users: int) -> None:
        """Adopt the limit of the tenant's real size once $count has told it."""
        capacity = tenant_limit(users) * HEADROOM
        with self.tenant.lock:
            ratio = capacity / self.tenant.capacity
            self.tenant.capacity = capacity
            self.tenant.rate *= ratio

    def spend(self, units: float) -> float:
        """Block until `units` fit in both buckets; returns the seconds waited."""
        wait = max(self.tenant.reserve(units), self.app.reserve(units))
        if wait > 0:
            time.sleep(wait)
        return wait
