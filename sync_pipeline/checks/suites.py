"""The great-expectations suites, by stage: what each check expects of its rows.

Values known only at run time (the extraction's counts, the deny list, the tenant's limits)
are suite parameters, bound when the suite is validated. A CRITICAL expectation guards the
load (its failure is ERROR and blocks the apply); a WARNING one only advises. A suite built
with `strict=False` (ADVISORY_SUITES, for a test sync or an operator-allowed mass
deactivation) turns its guards into warnings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync_pipeline.transform import addresses

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

# The transform's own pattern (addresses.py): whitespace spelled out, as Postgres reads it too.
ADDRESS_REGEX = addresses.ADDRESS_RE
BLANK_REGEX = r"^\s*$"

# Columns that identify a row in the samples shown to operators (never secrets: ids, addresses).
SAMPLE_COLUMNS = {
    "staging_users": ["id", "user_principal_name"],
    "staging_groups": ["id", "display_name"],
    "staging_members": ["group_id", "missing_sample", "unknown_type_sample"],
    "staging_member_count": ["staged", "extracted"],
    "staging_row_count": ["staged", "extracted"],
    "snapshot_users": ["graph_id", "email", "manager_graph_id"],
    "snapshot_groups": ["graph_id", "name"],
    "snapshot_odd_rows": ["kind", "graph_id", "reason", "detail"],
    "snapshot_memberships": ["group_graph_id", "unknown_sample"],
    "diff_safety": ["deactivations", "active_users"],
    "diff_fields": ["entity", "action", "key", "label", "field"],
    "diff_held": ["kind", "label", "status"],
    "drift": ["imported", "baseline"],
}


# Suites that also run as advisory (guards turned into warnings: `strict=False`).
ADVISORY_SUITES = ("diff_safety", "drift")


def _param(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def suite_expectations(name: str, strict: bool) -> list[Expectation]:
    """The expectations of suite `name` (new objects: GX adds each to one suite only)."""
    # GX is imported in each stage's function, not at module top: it takes seconds to import.
    suites = {**_staging(), **_snapshot(), **_diff(strict)}
    return suites[name]


def _staging() -> dict[str, list[Expectation]]:
    """staging.*: the extraction's rows and counts."""
    from great_expectations import expectations as e
    from great_expectations.expectations.metadata_types import FailureSeverity

    return {
        "staging_users": [
            e.ExpectColumnValuesToNotBeNull(column="id", description="every user has an id"),
            e.ExpectColumnValuesToBeUnique(column="id", description="user ids are unique"),
            e.ExpectTableRowCountToEqual(
                value=_param("extracted_rows"),
                description="staged users = users the extraction counted",
            ),
            e.ExpectColumnValuesToNotBeNull(
                column="user_principal_name",
                description="every user has a userPrincipalName (else the read lost it)",
            ),
            e.ExpectColumnValuesToMatchRegex(
                column="user_principal_name",
                regex=ADDRESS_REGEX,
                description="userPrincipalName is well-formed (else excluded as no_email)",
                severity=FailureSeverity.WARNING,
            ),
            e.ExpectColumnValuesToNotBeNull(
                column="account_enabled",
                description="accountEnabled is present (else disabled users would import)",
            ),
            e.ExpectColumnValuesToBeInSet(
                column="account_enabled",
                value_set=[True, False],
                description="accountEnabled is a boolean",
            ),
        ],
        "staging_groups": [
            e.ExpectColumnValuesToNotBeNull(column="id", description="every group has an id"),
            e.ExpectColumnValuesToBeUnique(column="id", description="group ids are unique"),
            e.ExpectTableRowCountToEqual(
                value=_param("extracted_rows"),
                description="staged groups = groups the extraction counted",
            ),
        ],
        "staging_members": [
            e.ExpectColumnValuesToBeUnique(column="group_id", description="one row per group"),
            e.ExpectColumnValuesToBeInSet(
                column="group_staged",
                value_set=[True],
                description="no member rows for a group that was not staged",
            ),
            e.ExpectColumnValuesToBeInSet(
                column="missing_members",
                value_set=[0],
                description="every user or group member was read as a user or group (else a "
                "read lost it)",
            ),
            e.ExpectColumnValuesToBeInSet(
                column="unknown_type_members",
                value_set=[0],
                description="every member is a user, a group or a known directory object type "
                "(others are ignored by the transform)",
                severity=FailureSeverity.WARNING,
            ),
        ],
        # a daily staging_users check (checks/scope.py) validates the changed rows, and this
        # one row: every staged user counted (an index-only count) against the extraction
        "staging_row_count": [
            e.ExpectColumnPairValuesToBeEqual(
                column_A="staged",
                column_B="extracted",
                description="staged rows = rows the extraction counted",
            ),
        ],
        # validated with staging_members (the same check): one row, the tenant's membership
        # count, taken from the same ordered pass over the members as the rest of that suite
        "staging_member_count": [
            e.ExpectColumnPairValuesToBeEqual(
                column_A="staged",
                column_B="extracted",
                description="staged memberships = memberships the extraction counted",
            ),
        ],
    }


def _snapshot() -> dict[str, list[Expectation]]:
    """snapshot.*: what the load relies on, whatever the transform did."""
    from great_expectations import expectations as e
    from great_expectations.expectations.metadata_types import FailureSeverity

    return {
        "snapshot_users": [
            e.ExpectColumnValuesToNotBeNull(
                column="email", description="every imported user has an address"
            ),
            e.ExpectColumnValuesToMatchRegex(
                column="email", regex=ADDRESS_REGEX, description="addresses are well-formed"
            ),
            e.ExpectColumnValuesToBeUnique(
                column="address_key",
                description="addresses are unique per tenant (case, Unicode width and spaces "
                "ignored)",
            ),
            e.ExpectColumnValuesToNotBeInSet(
                column="address_key",
                value_set=_param("deny_addresses"),
                description="no address on the deny list",
            ),
            e.ExpectColumnValuesToNotBeInSet(
                column="address_domain",
                value_set=_param("deny_domains"),
                description="no address in a denied *@domain",
            ),
            e.ExpectColumnValuesToBeInSet(
                column="manager_known",
                value_set=[True],
                description="every manager is an imported snapshot user",
            ),
            e.ExpectColumnValuesToBeInSet(
                column="manager_chain_ends",
                value_set=[True],
                description="no manager cycles (every manager chain ends at a top)",
            ),
        ],
        "snapshot_groups": [
            e.ExpectColumnValuesToBeUnique(column="graph_id", description="group ids are unique"),
            e.ExpectColumnValuesToNotBeNull(
                column="name", description="every imported group has a name"
            ),
            e.ExpectColumnValuesToNotMatchRegex(
                column="name", regex=BLANK_REGEX, description="no blank group names"
            ),
            e.ExpectColumnValuesToNotMatchRegex(
                column="mapped_to", regex=BLANK_REGEX, description="no blank mapping targets"
            ),
        ],
        # advisory only: every row is a Graph row the transform left out or repaired
        "snapshot_odd_rows": [
            e.ExpectColumnValuesToBeNull(
                column="reason",
                description="no odd Graph rows left out or repaired (duplicate or unusable "
                "addresses, manager cycles cut, blank group names, nesting cycles)",
                severity=FailureSeverity.WARNING,
            ),
        ],
        "snapshot_memberships": [
            e.ExpectColumnValuesToBeInSet(
                column="group_imported",
                value_set=[True],
                description="every membership's group is an imported snapshot group",
            ),
            e.ExpectColumnValuesToBeInSet(
                column="unknown_users",
                value_set=[0],
                description="every membership's user is an imported snapshot user",
            ),
        ],
    }


def _diff(strict: bool) -> dict[str, list[Expectation]]:
    """The diff and the drift: the run-wide risks (guards) and blanked fields."""
    from great_expectations import expectations as e
    from great_expectations.expectations.metadata_types import FailureSeverity

    guard = FailureSeverity.CRITICAL if strict else FailureSeverity.WARNING
    return {
        "diff_safety": [
            e.ExpectColumnValuesToBeBetween(
                column="deactivations",
                min_value=0,
                max_value=_param("max_deactivations"),
                description="deactivations within max_deactivations",
                severity=guard,
            ),
            e.ExpectColumnValuesToBeBetween(
                column="deactivation_percent",
                min_value=0,
                max_value=_param("max_deactivation_percent"),
                description="deactivations within max_deactivation_percent of active users",
                severity=guard,
            ),
        ],
        "diff_fields": [
            e.ExpectColumnValuesToNotBeNull(
                column="new_value", description="no update blanks an address or a name"
            ),
            e.ExpectColumnValuesToNotMatchRegex(
                column="new_value",
                regex=BLANK_REGEX,
                description="no update sets an address or a name to spaces",
            ),
        ],
        "diff_held": [
            e.ExpectColumnValuesToBeBetween(
                column="held_hours",
                min_value=0,
                max_value=24,
                description="nothing held for a person's decision for more than a day",
                severity=FailureSeverity.WARNING,
            ),
        ],
        "drift": [
            e.ExpectColumnValuesToBeBetween(
                column="change_percent",
                min_value=0,
                max_value=_param("drift_warn_percent"),
                description="imported users within drift_warn_percent of the last sync",
                severity=FailureSeverity.WARNING,
            ),
            e.ExpectColumnValuesToBeBetween(
                column="change_percent",
                min_value=0,
                max_value=_param("drift_error_percent"),
                description="imported users within drift_error_percent of the last sync",
                severity=guard,
            ),
        ],
    }
