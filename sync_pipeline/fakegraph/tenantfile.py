"""Tenant documents on disk: reading a `--tenant-file` (with its shape checked) and the
tenants bundled with the package (`fakegraph/tenants/*.json`)."""

from __future__ import annotations

import json
from pathlib import Path


def load_tenant_file(path: str | Path) -> dict:
    """Read a tenant document (the `--tenant-file` format) and check its shape."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    missing = [k for k in ("tenant_id", "client_id", "users", "groups", "members") if k not in doc]
    if missing:
        raise ValueError(f"tenant file {path}: missing keys {', '.join(missing)}")
    for key, default in (
        ("other_objects", []),
        ("managers", {}),
        ("mailbox_purposes", {}),
        ("subscribedSkus", []),
    ):
        doc.setdefault(key, default)
    doc.setdefault("name", Path(path).stem)
    doc.setdefault("domain", None)
    return doc


def bundled_tenant(name: str = "contoso-demo") -> dict:
    """One of the tenant documents shipped with the package (`fakegraph/tenants/*.json`)."""
    path = Path(__file__).with_name("tenants") / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no bundled tenant {name!r} at {path}")
    return load_tenant_file(path)
