"""One cost table: the client's (graph/budget.py) and the fake's (fakegraph/costs.py,
fakegraph/throttle.py) resource-unit costs and limits are each what docs/graph.md documents.

The two copies are kept apart on purpose (the fake referees the client); this holds both to the
documented tables, so that neither drifts alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_pipeline.fakegraph import base as fake_base
from sync_pipeline.fakegraph import costs as fake_costs
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.fakegraph import throttle as fake_throttle
from sync_pipeline.fakegraph.mutations import _Tenant
from sync_pipeline.graph import budget

DOC = Path(__file__).resolve().parents[1] / "docs" / "graph.md"


def markdown_table(header: tuple[str, ...]) -> list[list[str]]:
    """The rows of the table in docs/graph.md whose header row is `header`, cells stripped of
    spaces and backticks."""
    lines = DOC.read_text(encoding="utf-8").splitlines()

    def cells(line: str) -> list[str]:
        return [c.replace("`", "").strip() for c in line.strip().strip("|").split("|")]

    for i, line in enumerate(lines):
        if line.startswith("|") and tuple(cells(line)) == header:
            rows = []
            for row in lines[i + 2 :]:  # past the header and its |---| line
                if not row.startswith("|"):
                    break
                rows.append(cells(row))
            assert rows, f"the table {header} in {DOC} has no rows"
            return rows
    raise AssertionError(f"no table with the header {header} in {DOC}")


def number(text: str) -> int:
    return int(text.replace(",", "").replace("+", ""))


def documented_costs() -> dict[tuple[str, str], int]:
    rows = markdown_table(("method", "path", "resource units"))
    table = {(method, path): number(units) for method, path, units in rows}
    assert len(table) == len(rows), "a (method, path) is listed twice in docs/graph.md"
    return table


def test_client_base_costs_are_the_documented_table():
    client = {(method, path): units for method, path, units in budget.BASE_COSTS}
    assert client == documented_costs()


def test_fake_base_costs_are_the_documented_table():
    fake = {
        (method, "/".join("{id}" if p == "*" else p for p in parts)): units
        for (method, parts), units in fake_costs.BASE_COSTS.items()
    }
    assert fake == documented_costs()


@pytest.mark.parametrize(("method", "path"), sorted(documented_costs()))
def test_both_charge_each_documented_base_cost(method, path):
    """Through each side's cost function, as a call would be charged (ids filled in)."""
    units = documented_costs()[(method, path)]
    concrete = path.replace("{id}", "0f1e")
    assert budget.cost(method, f"/v1.0/{concrete}") == units
    assert fake_costs.cost(method, f"/{concrete}", {}) == units


# A base cost high enough that no documented change reaches the floor of 1.
MODIFIER_PATH = "groups/9a/transitiveMembers"
MODIFIER_BASE = 5
OPTIONS = {
    "$select": {"$select": "id"},
    "$expand": {"$expand": "x"},
    "$top below 20": {"$top": "19"},
}


def documented_changes() -> dict[str, int]:
    rows = markdown_table(("query option", "change in resource units"))
    return {option: number(change) for option, change in rows}


def test_the_documented_query_options_are_the_ones_both_apply():
    assert set(documented_changes()) == set(OPTIONS)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_both_apply_each_documented_change(option):
    params = OPTIONS[option]
    units = MODIFIER_BASE + documented_changes()[option]
    assert budget.cost("GET", f"/v1.0/{MODIFIER_PATH}", params) == units
    assert fake_costs.cost("GET", f"/{MODIFIER_PATH}", params) == units


def test_both_apply_all_changes_together_and_never_go_below_one():
    changes = documented_changes()
    every = {k: v for params in OPTIONS.values() for k, v in params.items()}
    units = MODIFIER_BASE + sum(changes.values())
    assert budget.cost("GET", f"/v1.0/{MODIFIER_PATH}", every) == units
    assert fake_costs.cost("GET", f"/{MODIFIER_PATH}", every) == units
    # `users` costs 2: $select and a small $top would take it to 0
    small = {"$select": "id", "$top": "5"}
    assert budget.cost("GET", "/v1.0/users", small) == 1
    assert fake_costs.cost("GET", "/users", small) == 1


def documented_limits() -> dict[str, tuple[int, int]]:
    rows = markdown_table(("limit", "resource units or requests", "per seconds"))
    return {limit: (number(units), number(seconds)) for limit, units, seconds in rows}


def fake_tenant_limit(users: int) -> int:
    return _Tenant(generate_tenant(name="limits", users=users, seed=1)).size_limit()


@pytest.mark.parametrize(
    ("limit", "users"),
    [
        ("per app per tenant, tenant under 50 users", 49),
        ("per app per tenant, tenant of 50 to 500 users", 50),
        ("per app per tenant, tenant of 50 to 500 users", 500),
        ("per app per tenant, tenant over 500 users", 501),
    ],
)
def test_both_apply_the_documented_tenant_limits(limit, users):
    units, seconds = documented_limits()[limit]
    assert budget.tenant_limit(users) == units
    assert fake_tenant_limit(users) == units
    assert budget.TENANT_WINDOW == fake_throttle.TENANT_WINDOW == seconds


def test_both_apply_the_documented_app_limits():
    limits = documented_limits()
    units, seconds = limits["per app across all tenants"]
    assert (budget.APP_LIMIT, budget.APP_WINDOW) == (units, seconds)
    assert (fake_throttle.GLOBAL_LIMIT, fake_throttle.GLOBAL_WINDOW) == (units, seconds)
    requests, seconds = limits["requests per app across all tenants"]
    assert (budget.APP_REQUESTS_PER_SECOND, budget.REQUEST_WINDOW) == (requests, seconds)
    assert fake_base.REQUESTS_PER_SECOND == requests
