"""The fake's options and state (the constructor every concern's mixin shares), and the
records of what it issued: access tokens, device codes, refresh tokens.

Everything runs in the event loop thread of one uvicorn server; request handling is
synchronous under one lock (the Python admin methods take the same lock), so the state needs
no other synchronisation.
"""

from __future__ import annotations

import collections
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from sync_pipeline.fakegraph.mutations import _Tenant
from sync_pipeline.fakegraph.tenant import _DeltaSession

if TYPE_CHECKING:
    from sync_pipeline.fakegraph.throttle import _Bucket

# Per app across all tenants, whatever the service: "2000 requests per second" (the global
# table of Microsoft's concepts/throttling-limits.md). Each request inside a `$batch` counts
# (json-batching.md: "Requests in a batch are evaluated individually against throttling
# limits"), and so does the batch itself: the docs do not say whether the envelope counts, so
# the fake takes the stricter reading.
REQUESTS_PER_SECOND = 2_000


@dataclass
class _Token:
    tenant_id: str
    client_id: str
    expires_at: float
    user_id: str | None = None


@dataclass
class _DeviceCode:
    tenant_id: str
    client_id: str
    scope: str
    user_code: str
    expires_at: float
    user_id: str | None = None


@dataclass
class _Refresh:
    tenant_id: str
    client_id: str
    user_id: str
    scope: str
    state: str = "ok"  # ok | revoked | expired


class _FakeBase:
    """The fake's options and state; the concern mixins (and FakeGraph) build on it."""

    def __init__(
        self,
        tenants: list[dict],
        *,
        secrets: Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path,
        latency: float = 0.0,
        seed: int = 0,
        certificates: Mapping[str, Mapping[str, str]] | None = None,
        throttle: bool = False,
        throttle_scale: float = 1.0,
        requests_per_second: float = REQUESTS_PER_SECOND,
        fail_every_nth_429: int | None = None,
        error_rate_503: float = 0.0,
        drop_rate: float = 0.0,
        empty_page_rate: float = 0.0,
        fault_retry_after: float = 0.2,
        outlook_retry_after: float = 1.0,
        delta_page_size: int = 200,
        delta_member_page_size: int = 250,
        delta_token_ttl: float = 7 * 86400.0,
        device_code_interval: int = 5,
        delta_repeat_rate: float = 0.01,
        count_lag: float = 2.0,
        count_offset: int = 0,
        count_supported: bool = True,
        script: Callable[[str, str, dict[str, str], Mapping[str, str], bytes], Any] | None = None,
        notification_ca: Path | str | None = None,
        notification_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1"),
    ):
        """Graph's documented behaviour is the default, and no easier. Options a test turns:

        - delta_repeat_rate: the share of a delta round's objects listed again on a later
          page (Graph: "the same item can show up anywhere in the nextLink sequence");
        - count_lag: seconds a creation or deletion takes to reach `$count` (eventually
          consistent; Microsoft gives no figure: seconds to minutes); count_offset: a skew
          added to every users/groups `$count`, for a test of a lost-pages check;
        - count_supported=False: `$count` answers 400, as in Azure AD B2C tenants;
        - script(method, path, query, headers, body): answers Graph calls (after sign-in and
          the bearer token's check) with (status, JSON body[, headers]) where it returns one,
          for conformance tests that replay Microsoft's documented response shapes through
          the real client; None falls through to the fake's own directory;
        - outlook_retry_after: the Retry-After of a 429 for Outlook's concurrency (outlook.py);
        - notification_ca: the CA file that the receivers of change notifications are
          verified with (subscriptions.py); notification_hosts: the only hosts it posts to.
        """
        self._tenants: dict[str, _Tenant] = {t["tenant_id"]: _Tenant(t) for t in tenants}
        self._secrets = dict(secrets)
        self._host = host
        self._requested_port = port
        self.state_dir = Path(state_dir)
        self.latency = latency
        self.throttle = throttle
        self.throttle_scale = throttle_scale
        # with `throttle`: the per-app request ceiling (tests lower it, as throttle_scale does
        # for resource units)
        self.requests_per_second = requests_per_second
        self.fail_every_nth_429 = fail_every_nth_429
        self.error_rate_503 = error_rate_503
        self.drop_rate = drop_rate
        self.empty_page_rate = empty_page_rate
        self.fault_retry_after = fault_retry_after
        self.outlook_retry_after = outlook_retry_after
        self.delta_page_size = delta_page_size
        self.delta_member_page_size = delta_member_page_size
        self.delta_token_ttl = delta_token_ttl
        self.device_code_interval = device_code_interval
        self.delta_repeat_rate = delta_repeat_rate
        self.count_lag = count_lag
        self.count_offset = count_offset
        self.count_supported = count_supported
        self.script = script
        self.notification_ca = notification_ca
        self.notification_hosts = tuple(notification_hosts)
        # subscriptions.py: subscriptions by id, and the notifications waiting to go out
        self._subs: dict[str, dict[str, Any]] = {}
        self._outbox: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._delivered: list[dict[str, Any]] = []
        self._courier: threading.Thread | None = None
        self._seed = seed
        self._sessions_started = 0
        self._certs: dict[str, dict[str, Any]] = {}
        for tid, certs in (certificates or {}).items():
            for pem in certs.values():
                self.register_certificate(tid, pem)
        self._fault_rng = random.Random(seed)
        self._batch_rng = random.Random(seed + 1)
        self._id_rng = random.Random(seed + 2)
        self._graph_requests = 0
        self._lock = threading.RLock()
        # Outlook requests in flight (outlook.py): arrival number -> (app, slots) of those
        # admitted, the numbers of those refused, and the one the main lock is answering now
        self._outlook_lock = threading.Lock()
        self._outlook_inflight: dict[int, tuple[str, int]] = {}
        self._outlook_refused: set[int] = set()
        self._outlook_seq = 0
        self._outlook_current: int | None = None
        self._tokens: dict[str, _Token] = {}
        self._device_codes: dict[str, _DeviceCode] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._buckets: dict[Any, _Bucket] = {}
        self._withdrawn: dict[str, set[str]] = {}  # tenant id -> permissions taken away
        self._granted_extra: dict[str, set[str]] = {}  # tenant id -> NOT_GRANTED ones granted
        self._secret_expiry: dict[str, float] = {}  # tenant id -> the secret's endDateTime
        self._started_at = time.time()  # a secret's default startDateTime
        self._delta_sessions: collections.OrderedDict[str, _DeltaSession] = (
            collections.OrderedDict()
        )
        self._stats = self._empty_stats()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.ca_path = self.state_dir / "ca.pem"

    @staticmethod
    def _empty_stats() -> dict:
        return {
            "requests": collections.Counter(),
            "status": collections.Counter(),
            "resource_units": 0,
            "resource_units_by_tenant": collections.Counter(),
            "graph_calls_by_tenant": collections.Counter(),
            "throttled_by_tenant": collections.Counter(),
            "throttled": 0,
            "throttled_requests_per_second": 0,
            "throttled_outlook_concurrency": 0,
            "faults": collections.Counter(),
            "tokens_issued": 0,
        }

    def register_certificate(self, tenant_id: str, cert_pem: str | bytes) -> str:
        """Accept client assertions signed by this certificate's key; returns the SHA-1 hex."""
        data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
        cert = x509.load_pem_x509_certificate(data)
        sha1 = cert.fingerprint(hashes.SHA1()).hex().upper()  # x5t is SHA-1
        sha256 = cert.fingerprint(hashes.SHA256()).hex().upper()
        entry = {"key": cert.public_key(), "sha1": sha1}
        certs = self._certs.setdefault(tenant_id, {})
        certs[sha1] = entry
        certs[sha256] = entry
        return sha1

    def _tenant(self, tenant_id: str) -> _Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise KeyError(f"unknown tenant {tenant_id}")
        return tenant
