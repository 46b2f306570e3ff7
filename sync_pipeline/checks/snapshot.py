"""The snapshot suites: what the load relies on, re-checked whatever the transform did.

Addresses present, well-formed, unique and not denied, compared by the same key the transform
uses (`sync.address_key`: the key comes from the database with the rows, so check and
transform cannot disagree); managers and members point at imported rows; no manager cycles;
no blank group names; the odd Graph rows the transform left out or repaired, counted; and the
drift of the imported users against the last successful sync.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from sync_pipeline.checks.frames import load
from sync_pipeline.checks.gxrun import validate
from sync_pipeline.checks.outcome import Outcome
from sync_pipeline.checks.scope import Scope
from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings


def deny_params(conn: sa.Connection, settings: TenantSettings) -> dict[str, list[str]]:
    """The deny list as address keys, by the transform's own function (`sync.address_key`)."""
    params = {"entries": [e.strip() for e in settings.email_deny_list]}
    entries = [e or "" for e in conn.execute(db.q("checks/deny_keys"), params).scalars()]
    return {
        "deny_addresses": [e for e in entries if not e.startswith("*@")],
        "deny_domains": [e.removeprefix("*@") for e in entries if e.startswith("*@")],
    }


def manager_chain_ends(ids: pd.Series, managers: pd.Series) -> np.ndarray:
    """For each user (`ids[i]`, managed by `managers[i]`), whether following managers ends at
    someone without one: a manager that is not among `ids` (or none) ends the chain. False in
    a cycle and below one.

    Hand-written on purpose (no library walks a functional graph): pointer jumping on integer
    positions. Each user points at its manager's position, or at a sentinel that points at
    itself; every round doubles how far each pointer has jumped, so after log2(n) + 1 rounds
    a chain that ends has reached the sentinel and one that cycles never does. About 10 ms
    at 100k users, where a memoised Python walk took ~0.1 s and a recursive SQL walk seconds.
    """
    n = len(ids)
    position = pd.Index(ids)
    parent = position.get_indexer(managers).astype(np.int64)  # -1: None, or not imported
    parent[parent < 0] = n  # no manager, or one that is not imported: the chain ends
    parent = np.append(parent, n)  # the sentinel points at itself
    for _ in range(max(1, n.bit_length() + 1)):
        parent = parent[parent]
    return parent[:n] == n


def check_snapshot_users(
    conn: sa.Connection, settings: TenantSettings, scope: Scope | None = None
) -> Outcome:
    """Imported users: addresses (present, well-formed, unique, not denied), managers.

    Daily (`scope` not whole): the users rewritten since the last apply and their reports,
    every user holding an address twice, and every user whose manager chain does not end
    (the chains walked over all users, from two columns)."""
    if scope is None or scope.whole:
        frame = load(conn, "snapshot_users", {"tenant": settings.slug})
        managers = frame["manager_graph_id"]
        imported = set(frame["graph_id"])
        frame["manager_known"] = [m is None or m in imported for m in managers]
        frame["manager_chain_ends"] = manager_chain_ends(frame["graph_id"], managers)
    else:
        chains = load(conn, "snapshot_managers", {"tenant": settings.slug})
        ends = dict(
            zip(
                chains["graph_id"],
                manager_chain_ends(chains["graph_id"], chains["manager_graph_id"]),
                strict=True,
            )
        )
        cycling = [g for g, ok in ends.items() if not ok]
        frame = load(conn, "snapshot_users_changed", {"tenant": settings.slug, "also": cycling})
        frame["manager_chain_ends"] = [bool(ends.get(g, True)) for g in frame["graph_id"]]
    frame["address_domain"] = [
        k.rpartition("@")[2] if k is not None else None for k in frame["address_key"]
    ]
    outcome = validate("snapshot_users", frame, deny_params(conn, settings))
    if scope is not None:
        outcome.facts |= scope.facts()
    return outcome


def check_snapshot_groups(conn: sa.Connection, tenant: str) -> Outcome:
    """Imported groups: ids unique, names present and not blank."""
    return validate("snapshot_groups", load(conn, "snapshot_groups", {"tenant": tenant}))


def check_snapshot_odd_rows(conn: sa.Connection, tenant: str) -> Outcome:
    """Graph rows the transform left out or repaired instead of stopping the sync: WARN with
    their number per reason (`odd_<reason>` facts) and a few of them; never ERROR."""
    frame = load(conn, "snapshot_odd_rows", {"tenant": tenant})
    outcome = validate("snapshot_odd_rows", frame)
    counts = frame["reason"].value_counts() if len(frame) else {}
    outcome.facts |= {f"odd_{r}": int(counts.get(r, 0)) for r in ODD_ROW_REASONS}
    return outcome


# The reasons snapshot_odd_rows counts (sql/checks/snapshot_odd_rows.sql).
ODD_ROW_REASONS = (
    "duplicate_email",
    "no_email",
    "manager_cycle",
    "blank_group_name",
    "nesting_cycle",
)


def check_snapshot_memberships(
    conn: sa.Connection, tenant: str, scope: Scope | None = None
) -> Outcome:
    """Memberships point at imported snapshot groups and users (daily, `scope` not whole:
    every group, and the members among the users rewritten since the last apply)."""
    changed_only = scope is not None and not scope.whole
    frame = load(conn, "snapshot_memberships", {"tenant": tenant, "changed_only": changed_only})
    outcome = validate("snapshot_memberships", frame)
    if scope is not None:
        outcome.facts |= scope.facts()
    return outcome


def drift_limits(settings: TenantSettings) -> dict[str, float]:
    """Per-tenant drift limits; defaults until the settings model carries them."""
    return {
        "drift_warn_percent": float(getattr(settings, "drift_warn_percent", 10.0)),
        "drift_error_percent": float(getattr(settings, "drift_error_percent", 30.0)),
    }


def check_drift(conn: sa.Connection, settings: TenantSettings, *, guard: bool = True) -> Outcome:
    """Imported users against the last successful sync: WARN above one share, ERROR above
    a larger one (WARN too with `guard=False`). A tenant's first sync has no baseline."""
    row = conn.execute(db.q("checks/drift"), {"tenant": settings.slug}).one()
    limits = drift_limits(settings)
    facts: dict[str, Any] = {"imported_users": int(row.imported), **limits}
    if row.baseline is None:
        frame = pd.DataFrame(columns=["imported", "baseline", "change_percent"], dtype=object)
        facts["baseline"] = "none (first sync)"
    else:
        baseline = int(row.baseline)
        change = 100.0 * abs(int(row.imported) - baseline) / max(baseline, 1)
        frame = pd.DataFrame(
            [{"imported": int(row.imported), "baseline": baseline, "change_percent": change}]
        )
        facts |= {
            "baseline_users": baseline,
            "baseline_sync_run_id": int(row.baseline_run_id),
            "change_percent": round(change, 1),
        }
    outcome = validate("drift", frame, limits, strict=guard)
    outcome.facts |= facts
    return outcome
