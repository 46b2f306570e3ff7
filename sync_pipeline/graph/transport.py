"""The HTTP side of the Graph client: a requests session with urllib3 retries, the counters
of one extraction, and bodies read as JSON.

Retries (429/503/504 and dropped connections) are urllib3's `Retry`, honouring `Retry-After`;
the subclass below only adds what urllib3 lacks: fractional `Retry-After` ("2.128", as Graph
sends) and counting the retries and the seconds spent waiting, for the run's metadata.
"""

from __future__ import annotations

import json as jsonlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sync_pipeline.core.settings import TenantSettings

# Retried on a plain request (urllib3) and on a `$batch` item alike.
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass
class GraphStats:
    """Counters for one extraction; shared by the client's threads."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    wait_seconds: float = 0.0
    budget_wait_seconds: float = 0.0
    resource_units: int = 0
    batches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, value in deltas.items():
                setattr(self, name, getattr(self, name) + value)

    def as_metadata(self) -> dict[str, float]:
        return {
            "graph_requests": self.requests,
            "graph_retries": self.retries,
            "graph_throttled": self.throttled,
            "graph_wait_seconds": round(self.wait_seconds, 3),
            "graph_resource_units": self.resource_units,
            "graph_batches": self.batches,
            "graph_budget_wait_seconds": round(self.budget_wait_seconds, 3),
        }


class _GraphRetry(Retry):
    stats: GraphStats | None = None

    def new(self, **kw: Any) -> _GraphRetry:
        retry = super().new(**kw)
        retry.stats = self.stats
        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = float(retry_after)
        except ValueError:
            return super().parse_retry_after(retry_after)
        return min(max(seconds, 0.0), float(self.retry_after_max))

    def sleep(self, response: Any = None) -> None:
        started = time.monotonic()
        super().sleep(response)
        if self.stats is not None:
            throttled = 1 if response is not None and response.status == 429 else 0
            self.stats.add(retries=1, throttled=throttled, wait_seconds=time.monotonic() - started)


def _retry_policy(stats: GraphStats, connect: int = 5) -> Retry:
    retry = _GraphRetry(
        total=10,
        connect=connect,
        read=5,
        status=8,
        other=0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # every call we make is a read, $batch POST included
        backoff_factor=0.5,
        backoff_max=60,
        backoff_jitter=0.5,
        respect_retry_after_header=True,
        raise_on_status=False,
        retry_after_max=180,
    )
    retry.stats = stats
    return retry


def new_session(
    settings: TenantSettings, stats: GraphStats, pool: int, connect_retries: int = 5
) -> requests.Session:
    """A session for one tenant's Graph and sign-in hosts. `connect_retries`: how often a
    refused or failed connection is tried again, with backoff (5: ~15 s, for a sync's reads;
    the sensors' short checks take 0, so one unreachable tenant does not hold a tick)."""
    session = requests.Session()
    # trust_env=False: an environment REQUESTS_CA_BUNDLE would otherwise override `verify`.
    session.trust_env = False
    session.verify = settings.ca_bundle or True
    adapter = HTTPAdapter(
        max_retries=_retry_policy(stats, connect_retries), pool_connections=4, pool_maxsize=pool
    )
    session.mount("https://", adapter)
    return session


def json_body(response: requests.Response) -> Any:
    """The body as JSON. orjson, not requests' `.json()`: parsing 1.5 M objects was a large part
    of a big tenant's read, on the threads that also keep the page chains going."""
    return orjson.loads(response.content)


def error_body(response: requests.Response) -> Any:
    try:
        return json_body(response)
    except (ValueError, jsonlib.JSONDecodeError):
        return {"error": {"code": "UnknownError", "message": response.reason or ""}}
