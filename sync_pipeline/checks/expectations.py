"""Data-quality suites (great-expectations 1.x) over one tenant's staging, snapshot and diff.

Each `check_*` function loads the rows it needs with a statement from `sql/checks/*.sql` (only
the columns the suite reads; relation tables are summed up per group in SQL so the frames stay
the size of the user or group list), validates them with a static GX suite, and returns an
`Outcome`: which expectations failed, how badly, and a few sample rows for the operator.
No Dagster imports here; `sync_pipeline.defs.checks` turns outcomes into asset checks.

Severity: a CRITICAL expectation guards the load (its failure is ERROR, which blocks the apply);
a WARNING one is advisory (WARN). GX runs quietly: an ephemeral context (no `gx/` folder),
progress bars off, analytics off.

What blocks and what only warns (docs/checks.md has the table): a guard of the engine's own
invariants or of a whole-run risk (an incomplete read, a mass deactivation, drift) is ERROR;
a property of individual Graph rows (an address that is malformed or a duplicate once
normalised, a member of an unknown type, a manager or nesting cycle, a blank group name) is
left out or repaired by the transform, row by row, and counted by a WARN expectation
(`snapshot_odd_rows`, and the member types in `staging_members`).

The snapshot suites re-check what the load relies on, whatever the transform did: addresses
present, well-formed, unique and not denied, compared by the same key the transform uses
(`sync.address_key`, see `transform/addresses.py`: the key comes from the database with the
rows, so check and transform cannot disagree); managers and members point at imported rows;
no manager cycles; no blank group names.

The suites live by stage: `staging`, `snapshot`, `diff` (their check functions), `suites`
(their expectations), `frames` (the rows they read), `gxrun` (GX itself) and `outcome`. This
module names them all, as the asset checks, tests and benchmarks use them.
"""

from __future__ import annotations

from sync_pipeline.checks.diff import (
    check_diff_fields,
    check_diff_held,
    check_diff_safety,
    diff_run_id,
)
from sync_pipeline.checks.frames import MEMBERSHIP_PLANNER, MEMBERSHIP_STATEMENTS, load
from sync_pipeline.checks.gxrun import (
    SAMPLE_ROWS,
    context,
    new_context,
    new_validation,
    validate,
    validation,
    warm_up,
)
from sync_pipeline.checks.outcome import ERROR, WARN, Failure, Outcome
from sync_pipeline.checks.snapshot import (
    ODD_ROW_REASONS,
    check_drift,
    check_snapshot_groups,
    check_snapshot_memberships,
    check_snapshot_odd_rows,
    check_snapshot_users,
    deny_params,
    drift_limits,
    manager_chain_ends,
)
from sync_pipeline.checks.staging import (
    OTHER_MEMBER_TYPES,
    check_staging_groups,
    check_staging_members,
    check_staging_users,
)
from sync_pipeline.checks.suites import ADDRESS_REGEX, ADVISORY_SUITES, BLANK_REGEX, SAMPLE_COLUMNS

# The GX plumbing under the private names tests and benchmarks reach for (the very same
# functions, so `cache_clear` on them clears gxrun's caches).
_context = context
_new_context = new_context
_validation = validation
_new_validation = new_validation

__all__ = [
    "ADDRESS_REGEX",
    "ADVISORY_SUITES",
    "BLANK_REGEX",
    "ERROR",
    "MEMBERSHIP_PLANNER",
    "MEMBERSHIP_STATEMENTS",
    "ODD_ROW_REASONS",
    "OTHER_MEMBER_TYPES",
    "SAMPLE_COLUMNS",
    "SAMPLE_ROWS",
    "WARN",
    "Failure",
    "Outcome",
    "check_diff_fields",
    "check_diff_held",
    "check_diff_safety",
    "check_drift",
    "check_snapshot_groups",
    "check_snapshot_memberships",
    "check_snapshot_odd_rows",
    "check_snapshot_users",
    "check_staging_groups",
    "check_staging_members",
    "check_staging_users",
    "deny_params",
    "diff_run_id",
    "drift_limits",
    "load",
    "manager_chain_ends",
    "validate",
    "warm_up",
]
