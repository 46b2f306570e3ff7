"""Throttling and faults: resource-unit buckets per app per tenant and per app, the app's
requests-per-second ceiling, the 429s with Retry-After they answer, and the faults a test
turns on (503s, every nth request 429, dropped connections).
"""

from __future__ import annotations

import time

from sync_pipeline.fakegraph.base import _FakeBase, _Token
from sync_pipeline.fakegraph.mutations import _Tenant
from sync_pipeline.fakegraph.wire import GraphError

GLOBAL_LIMIT = 150_000  # resource units per app across tenants, per 20 s
GLOBAL_WINDOW = 20.0
TENANT_WINDOW = 10.0


class _Bucket:
    """A token bucket: `capacity` resource units refilled over `window` seconds."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, capacity: float, window: float):
        self.capacity = capacity
        self.rate = capacity / window
        self.level = capacity
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        return 0.0 if self.level >= cost else (cost - self.level) / self.rate

    def used(self) -> float:
        return 1.0 - self.level / self.capacity


class _Throttling(_FakeBase):
    """Spending resource units and requests, and the injected faults."""

    def _dropped(self) -> bool:
        """Whether to drop this connection unanswered (drop_rate)."""
        if self.drop_rate and self._fault_rng.random() < self.drop_rate:
            self._stats["faults"]["drop"] += 1
            return True
        return False

    def _inject_fault(self) -> None:
        """A 503 (error_rate_503) or every nth Graph request a 429 (fail_every_nth_429)."""
        if self.error_rate_503 and self._fault_rng.random() < self.error_rate_503:
            self._stats["faults"]["503"] += 1
            raise GraphError(
                503,
                "serviceNotAvailable",
                "Service unavailable. Please retry later.",
                {"Retry-After": self._fault_wait()},
            )
        if self.fail_every_nth_429 and self._graph_requests % self.fail_every_nth_429 == 0:
            self._stats["faults"]["429"] += 1
            raise GraphError(
                429,
                "TooManyRequests",
                "Too many requests. Please retry after the time given in Retry-After.",
                {"Retry-After": self._fault_wait()},
            )

    def _fault_wait(self) -> str:
        return f"{self.fault_retry_after * (0.5 + self._fault_rng.random()):.3f}"

    def _admit_requests(self, token: _Token, n: int) -> None:
        """The app's requests-per-second ceiling across all its tenants: 429 above it."""
        if not self.throttle:
            return
        key = ("requests", token.client_id)
        bucket = self._buckets.get(key)
        if bucket is None:
            capacity = max(1.0, float(self.requests_per_second))
            bucket = self._buckets[key] = _Bucket(capacity, 1.0)
        bucket.refill(time.monotonic())
        wait = bucket.wait_for(n)
        if wait > 0:
            self._stats["throttled"] += 1
            self._stats["throttled_requests_per_second"] += 1
            raise GraphError(
                429,
                "TooManyRequests",
                "Too many requests. Application has exceeded its request rate limit.",
                {
                    "Retry-After": f"{max(wait, 0.001):.3f}",
                    "x-ms-throttle-scope": f"Application/ReadWrite/{token.client_id}/"
                    f"{token.tenant_id}",
                },
            )
        bucket.level -= n

    def _charge(self, token: _Token, tenant: _Tenant, units: int) -> dict[str, str]:
        self._admit_requests(token, 1)
        if self.throttle:
            now = time.monotonic()
            key = (token.client_id, tenant.tenant_id)
            bucket = self._buckets.get(key)
            if bucket is None:
                limit = max(1.0, tenant.size_limit() * self.throttle_scale)
                bucket = self._buckets[key] = _Bucket(limit, TENANT_WINDOW)
            glob = self._buckets.get(token.client_id)
            if glob is None:
                limit = max(1.0, GLOBAL_LIMIT * self.throttle_scale)
                glob = self._buckets[token.client_id] = _Bucket(limit, GLOBAL_WINDOW)
            bucket.refill(now)
            glob.refill(now)
            wait = max(bucket.wait_for(units), glob.wait_for(units))
            if wait > 0:
                self._stats["throttled"] += 1
                raise GraphError(
                    429,
                    "TooManyRequests",
                    "Too many requests. Application has exceeded its "
                    "resource unit limit for this tenant.",
                    {
                        "Retry-After": f"{max(wait, 0.001):.3f}",
                        "x-ms-throttle-limit-percentage": "1.0",
                    },
                )
            bucket.level -= units
            glob.level -= units
            self._stats["resource_units"] += units
            self._stats["resource_units_by_tenant"][tenant.tenant_id] += units
            used = max(bucket.used(), glob.used())
            if used >= 0.8:
                return {"x-ms-throttle-limit-percentage": f"{used:.2f}"}
            return {}
        self._stats["resource_units"] += units
        self._stats["resource_units_by_tenant"][tenant.tenant_id] += units
        return {}
