"""The demo tenant's fake Graph, started in-process when a sync of a fake tenant runs.

A tenant whose settings name `fake_tenant` is read from the bundled fake Graph (HTTPS, msal,
the same client code as for Microsoft) instead of a real directory. One server per process
serves every fake tenant that process syncs.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sync_pipeline.core import config
from sync_pipeline.core.settings import TenantSettings

if TYPE_CHECKING:  # imported when a fake tenant syncs: the fake's web stack loads only then
    from sync_pipeline.fakegraph import FakeGraph

DEFAULT_DEMO_SECRET = config.DEFAULT_DEMO_SECRET

_lock = threading.Lock()
_servers: dict[tuple[str, str], FakeGraph] = {}


def serving(settings: TenantSettings) -> TenantSettings:
    """Settings pointing at a running fake Graph that serves `settings.fake_tenant`."""
    if not settings.fake_tenant:
        return settings
    from sync_pipeline.fakegraph import FakeGraph, bundled_tenant

    doc = bundled_tenant(settings.fake_tenant)
    if doc["tenant_id"] != settings.tenant_id:
        raise ValueError(
            f"tenant {settings.slug}: tenant_id {settings.tenant_id} is not the fake tenant "
            f"{settings.fake_tenant!r} ({doc['tenant_id']})"
        )
    env = settings.client_secret_env or config.DEMO_SECRET
    secret = config.export_default(env, DEFAULT_DEMO_SECRET)
    key = (settings.fake_tenant, secret)
    with _lock:
        fake = _servers.get(key)
        if fake is None:
            state = Path(tempfile.mkdtemp(prefix="sp-fakegraph-"))
            fake = FakeGraph([doc], secrets={doc["tenant_id"]: secret}, state_dir=state).start()
            _servers[key] = fake
    return settings.model_copy(
        update={
            "graph_base_url": fake.base_url,
            "authority_host": fake.base_url,
            "ca_bundle": str(fake.ca_path),
            "client_secret_env": env,
        }
    )
