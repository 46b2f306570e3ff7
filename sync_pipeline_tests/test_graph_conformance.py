"""Graph's documented response shapes, replayed through the real client and the real extraction
into real Postgres.

Each payload here is written from Microsoft's documentation (microsoft-graph-docs-contrib:
delta-query-overview.md, delta-query-users.md, delta-query-groups.md, user-delta.md,
json-batching.md, throttling.md, aad-advanced-queries.md), not from the bundled fake: the fake
only signs in (msal over HTTPS) and hands every Graph call to the script of the test. So
these tests hold the engine to Graph itself, wherever the fake might be easier.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.extract.extraction import extract
from sync_pipeline.extract.staging import GraphDataError
from sync_pipeline.graph import GraphClient
from sync_pipeline_tests.support.fakegraph import settings_for, start_fake

USER = "#microsoft.graph.user"
Answer = tuple[Any, ...] | None


def user(uid: str, **props: Any) -> dict[str, Any]:
    """A users delta item of a first round, every selected property that is set."""
    return {
        "id": uid,
        "userPrincipalName": f"{uid}@contoso.example",
        "mail": f"{uid}@contoso.example",
        "displayName": f"User {uid}",
        "givenName": "User",
        "surname": uid,
        "accountEnabled": True,
        "userType": "Member",
        "assignedLicenses": [],
        "createdDateTime": "2024-01-02T03:04:05Z",
        **props,
    }


def group(gid: str, members: list[str] | None = None, **props: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": gid,
        "displayName": f"Group {gid}",
        "groupTypes": [],
        "mailEnabled": False,
        "securityEnabled": True,
        **props,
    }
    if members:
        item["members@delta"] = [{"@odata.type": USER, "id": m} for m in members]
    return item


def gone(oid: str, reason: str = "deleted") -> dict[str, Any]:
    return {"id": oid, "@removed": {"reason": reason}}


class Graph:
    """The Graph side of a test: delta rounds page by page, `$count`, `$batch` and objects by
    id, as the documentation shapes them. `rounds[kind][r]` is round r's list of pages; a
    round's last page carries the deltaLink that starts round r + 1."""

    def __init__(self) -> None:
        self.base = ""
        self.rounds: dict[str, list[list[list[dict[str, Any]]]]] = {"users": [], "groups": []}
        self.counts: dict[str, Callable[[], Answer]] = {}
        self.objects: dict[str, dict[str, Any]] = {}  # GET /users/{id} and /groups/{id}
        self.members: dict[str, list[str]] = {}  # GET /groups/{id}/members
        self.batches: list[Callable[[list[dict[str, Any]]], Answer]] = []  # scripted $batch
        self.calls: list[str] = []

    def count(self, kind: str, n: int | Callable[[], Answer]) -> None:
        self.counts[kind] = n if callable(n) else (lambda: (200, str(n)))

    def __call__(self, method: str, path: str, query: dict[str, str], headers, body) -> Answer:
        self.calls.append(f"{method} {path}")
        kind = path.strip("/").split("/")[0]
        if path in ("/users/delta", "/groups/delta"):
            return self._delta(kind, query)
        if path in ("/users/$count", "/groups/$count"):
            assert headers.get("consistencylevel") == "eventual"  # docs/graph.md
            return self.counts[kind]()
        if path == "/subscribedSkus":
            return 200, {"value": []}
        if path == "/$batch":
            requests = json.loads(body)["requests"]
            if self.batches:
                answer = self.batches.pop(0)(requests)
                if answer is not None:
                    return answer
            return 200, {"responses": [self._item(r) for r in requests]}
        return None

    def _delta(self, kind: str, query: dict[str, str]) -> Answer:
        if query.get("$deltatoken") == "latest":
            return 200, {"value": [], "@odata.deltaLink": self._link(kind, "$deltatoken", "z")}
        token = query.get("$skiptoken") or query.get("$deltatoken") or "r0p0"
        if token == "z":
            return 200, {"value": [], "@odata.deltaLink": self._link(kind, "$deltatoken", "z")}
        if token.startswith("r") and "p" not in token:
            token = f"{token}p0"
        r, p = (int(x) for x in token[1:].split("p"))
        pages = self.rounds[kind][r]
        body: dict[str, Any] = {"value": pages[p]}
        if p + 1 < len(pages):
            body["@odata.nextLink"] = self._link(kind, "$skiptoken", f"r{r}p{p + 1}")
        else:
            body["@odata.deltaLink"] = self._link(kind, "$deltatoken", f"r{r + 1}")
        return 200, body

    def _link(self, kind: str, key: str, token: str) -> str:
        return f"{self.base}/v1.0/{kind}/delta?{key}={token}"

    def _item(self, request: dict[str, Any]) -> dict[str, Any]:
        """One `$batch` item answered from `objects` / `members` (404 when unknown)."""
        path = request["url"].split("?")[0]
        parts = [p for p in path.split("/") if p]
        if parts[-1] == "members":
            ids = self.members.get(parts[1])
            if ids is None:
                return _inner(request["id"], 404, _error("Request_ResourceNotFound"))
            return _inner(
                request["id"], 200, {"value": [{"@odata.type": USER, "id": m} for m in ids]}
            )
        obj = self.objects.get(parts[1])
        if obj is None:
            return _inner(request["id"], 404, _error("Request_ResourceNotFound"))
        return _inner(request["id"], 200, obj)


def _inner(rid: str, status: int, body: Any, headers: dict[str, str] | None = None) -> dict:
    return {"id": rid, "status": status, "headers": headers or {}, "body": body}


def _error(code: str, message: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "r-1"}}}


@pytest.fixture
def graph(tmp_path, fake_tenant):
    """The scripted Graph behind the fake's sign-in; yields (script, settings factory)."""
    script = Graph()
    fake = start_fake([fake_tenant], tmp_path / "fake", script=script)
    script.base = fake.base_url
    yield script, (lambda slug, **kw: settings_for(slug, fake_tenant, fake, **kw))
    fake.stop()


def run(engine: sa.Engine, settings, **kw: Any):
    client = GraphClient(settings)
    with engine.begin() as conn:
        return extract(client, conn, settings.slug, workers=2, **kw), client


def staged(engine: sa.Engine, tenant: str) -> dict[str, set]:
    queries = {
        "users": "SELECT id, job_title, display_name FROM staging.users",
        "groups": "SELECT id FROM staging.groups",
        "members": "SELECT group_id, member_id FROM staging.group_members",
        "managers": "SELECT user_id, manager_id FROM staging.user_managers",
        "suspended": "SELECT group_id, member_id FROM staging.suspended_members",
        "links": "SELECT entity FROM sync.delta_state",
    }
    with engine.connect() as conn:
        return {
            name: {
                tuple(r) if len(r) > 1 else r[0]
                for r in conn.execute(sa.text(f"{sql} WHERE tenant = :t"), {"t": tenant})
            }
            for name, sql in queries.items()
        }


# -- repeats within a round --------------------------------------------------------------------


@pytest.mark.parametrize("members_in_delta", [True, False], ids=["members@delta", "batch"])
def test_a_first_round_repeating_objects_and_removing_one_late_ends_as_the_last_word(
    engine, graph, tenant_slug, members_in_delta
):
    """delta-query-overview.md: "the same item can show up anywhere in the nextLink
    sequence"; a first round may carry removals."""
    script, settings = graph
    script.rounds["users"] = [
        [
            [user("a", jobTitle="one"), user("b"), user("c")],
            [user("a", jobTitle="two"), gone("b"), gone("x", "changed")],
            [user("c")],
        ]
    ]
    if members_in_delta:
        script.rounds["groups"] = [
            [
                [group("g1", ["a"]), group("g2", ["c"])],
                [group("g1", ["c"]), group("g3")],
                [gone("g2", "changed"), group("g3", displayName="Renamed late")],
            ]
        ]
    else:  # the large-tenant read: groups without members, each group's members batched
        script.rounds["groups"] = [
            [
                [group("g1"), group("g2")],
                [group("g1"), group("g3")],
                [gone("g2", "changed"), group("g3", displayName="Renamed late")],
            ]
        ]
        script.members = {"g1": ["a", "c"], "g2": ["c"], "g3": []}
    script.count("users", 2)
    script.count("groups", 2)
    result, _ = run(
        engine, settings(tenant_slug), delta_members_max_users=10**6 if members_in_delta else 0
    )
    got = staged(engine, tenant_slug)
    assert got["users"] == {("a", "two", "User a"), ("c", None, "User c")}
    assert got["groups"] == {"g1", "g3"}
    assert got["members"] == {("g1", "a"), ("g1", "c")}
    # g2 was soft-deleted late in the round: its membership waits for a restore (in a batched
    # read, unless its members arrive after the removal: then the restore reads them again)
    assert got["suspended"] == {("g2", "c")} or (not members_in_delta and not got["suspended"])
    assert result.changes["users_listed_again"] >= 2 and result.count_check["users"] == "exact"


# -- $count is eventually consistent ----------------------------------------------------------


def _eighty_users(script: Graph) -> None:
    script.rounds["users"] = [[[user(f"u{i:02}") for i in range(80)]]]
    script.rounds["groups"] = [[[group("g1", ["u00"])]]]
    script.members = {"g1": ["u00"]}  # read in batches where the tenant's size is unknown
    script.count("groups", 1)


def test_a_count_off_by_what_index_lag_explains_passes_and_is_recorded(engine, graph, tenant_slug):
    script, settings = graph
    _eighty_users(script)
    script.count("users", 83)
    result, _ = run(engine, settings(tenant_slug))
    assert result.count_check == {"users": "within_tolerance", "groups": "exact"}
    assert result.count_offset["users"] == -3 and result.count_tolerance["users"] == 20
    assert len(staged(engine, tenant_slug)["users"]) == 80


def test_a_count_off_by_a_quarter_fails_and_keeps_nothing(engine, graph, tenant_slug):
    script, settings = graph
    _eighty_users(script)
    script.count("users", 110)
    with pytest.raises(GraphDataError, match=r"staged 80 users but Graph's \$count says 110"):
        run(engine, settings(tenant_slug))
    assert not any(staged(engine, tenant_slug).values())  # no row, no delta link


def test_a_count_taken_before_and_after_bounds_creations_during_the_read(
    engine, graph, tenant_slug
):
    """Objects created while the read runs: staged between the two counts is exact."""
    script, settings = graph
    _eighty_users(script)
    answers = iter([(200, "50"), (200, "120")])  # before the read, after it
    script.count("users", lambda: next(answers))
    result, _ = run(engine, settings(tenant_slug, count_tolerance_objects=0))
    assert result.count_check["users"] == "exact"


def test_a_tenant_without_count_support_is_read_on_the_paging_protocol(engine, graph, tenant_slug):
    """Azure AD B2C has no advanced queries: `$count` answers 400."""
    script, settings = graph
    _eighty_users(script)
    unsupported = (400, _error("Request_UnsupportedQuery", "Unsupported query."))
    script.count("users", lambda: unsupported)
    script.count("groups", lambda: unsupported)
    result, _ = run(engine, settings(tenant_slug))
    assert result.count_check == {"users": "unsupported", "groups": "unsupported"}
    assert len(staged(engine, tenant_slug)["users"]) == 80


# -- $batch answered 424 ------------------------------------------------------------------------


def test_a_batch_answered_424_is_read_item_by_item_and_its_throttled_items_retried(
    engine, graph, tenant_slug
):
    """throttling.md: a batch holding throttled items answers 424 overall, every item inside;
    an inner 502 is retried like a plain request's."""
    script, settings = graph
    script.rounds["users"] = [[[user("a"), user("b")]]]
    script.rounds["groups"] = [[[group("g1"), group("g2")]]]
    script.members = {"g1": ["a"], "g2": ["a", "b"]}
    script.count("users", 2)
    script.count("groups", 2)

    def throttled(requests: list[dict[str, Any]]) -> Answer:
        items = [script._item(r) for r in requests]
        items[1] = _inner(items[1]["id"], 429, _error("TooManyRequests"), {"Retry-After": "0.2"})
        return 424, {"responses": items}

    def bad_gateway(requests: list[dict[str, Any]]) -> Answer:
        return 200, {"responses": [_inner(r["id"], 502, _error("BadGateway")) for r in requests]}

    script.batches = [throttled, bad_gateway]
    _, client = run(engine, settings(tenant_slug), delta_members_max_users=0)
    assert staged(engine, tenant_slug)["members"] == {("g1", "a"), ("g2", "a"), ("g2", "b")}
    assert client.stats.throttled >= 1 and client.stats.retries >= 2
    assert script.calls.count("POST /$batch") == 3


# -- manager changes ----------------------------------------------------------------------------


def test_manager_changes_arrive_as_manager_at_delta_and_nothing_else_is_read(
    engine, graph, tenant_slug
):
    """user-delta.md: with `manager` selected an item carries `manager@delta`; a removed
    manager is an entry with `@removed`, or an empty list."""
    script, settings = graph
    boss = [{"@odata.type": USER, "id": "a"}]
    script.rounds["users"] = [
        [[user("a"), *(user(u, **{"manager@delta": boss}) for u in "bcd")]],
        [
            [
                {"id": "b", "manager@delta": [{"@odata.type": USER, "id": "c"}]},
                {"id": "c", "manager@delta": [{**boss[0], "@removed": {"reason": "deleted"}}]},
                {"id": "d", "manager@delta": []},
            ]
        ],
    ]
    script.rounds["groups"] = [[[]], [[]]]
    script.count("users", 4)
    script.count("groups", 0)
    run(engine, settings(tenant_slug))
    assert staged(engine, tenant_slug)["managers"] == {("b", "a"), ("c", "a"), ("d", "a")}
    script.calls.clear()
    result, _ = run(engine, settings(tenant_slug))
    got = staged(engine, tenant_slug)
    assert result.mode["users"] == "incremental"
    assert got["managers"] == {("b", "c")}
    assert ("b", None, "User b") in got["users"]  # the rest of the row kept (merged)
    assert not [c for c in script.calls if "manager" in c or c == "POST /$batch"]


# -- soft delete and restore --------------------------------------------------------------------


def test_a_soft_deleted_user_keeps_its_memberships_for_a_restore_read_whole(
    engine, graph, tenant_slug
):
    """delta-query-groups.md: a soft-deleted user keeps its memberships and appears in no
    members@delta until it is deleted for good; restored, it comes back in the users delta
    with no annotation (here: a return=minimal item holding only its id)."""
    script, settings = graph
    script.rounds["users"] = [
        [[user("a"), user("b", jobTitle="Engineer", **{"manager@delta": [{"id": "a"}]})]],
        [[gone("b", "changed")]],
        [[{"id": "b"}]],
        [[gone("b")]],
    ]
    script.rounds["groups"] = [
        [[group("g1", ["a", "b"])]],
        [[]],
        [[]],
        [[{"id": "g1", "members@delta": [{"@odata.type": USER, "id": "b", **gone("b")}]}]],
    ]
    script.count("groups", 1)
    script.count("users", 2)
    run(engine, settings(tenant_slug))

    script.count("users", 1)
    result, _ = run(engine, settings(tenant_slug))
    got = staged(engine, tenant_slug)
    assert result.changes["users_removed_changed"] == 1
    assert {u[0] for u in got["users"]} == {"a"} and got["members"] == {("g1", "a")}
    assert got["suspended"] == {("g1", "b")}

    script.count("users", 2)
    script.objects["b"] = {
        **user("b", jobTitle="Engineer"),
        "manager": {"@odata.type": USER, "id": "a"},
    }
    result, _ = run(engine, settings(tenant_slug))
    got = staged(engine, tenant_slug)
    assert ("b", "Engineer", "User b") in got["users"]  # whole, never the bare fragment
    assert got["members"] == {("g1", "a"), ("g1", "b")} and got["suspended"] == set()
    assert ("b", "a") in got["managers"]
    assert result.changes["users_read_whole"] == 1 and result.changes["memberships_restored"] == 1

    script.count("users", 1)
    run(engine, settings(tenant_slug))
    got = staged(engine, tenant_slug)
    assert {u[0] for u in got["users"]} == {"a"}
    assert got["members"] == {("g1", "a")} and got["suspended"] == set()


def test_a_full_read_keeps_what_a_later_restore_needs(engine, graph, tenant_slug):
    """A first round lists soft-deleted users as removed ('changed'); memberships set aside
    earlier survive a full read for them, and only for them."""
    script, settings = graph
    script.rounds["users"] = [
        [[user("a"), user("b"), user("c")]],
        [[gone("b", "changed"), gone("c", "changed")]],
    ]
    script.rounds["groups"] = [[[group("g1", ["a", "b", "c"])]], [[]]]
    script.count("groups", 1)
    script.count("users", 3)
    run(engine, settings(tenant_slug))
    script.count("users", 1)
    run(engine, settings(tenant_slug))
    assert staged(engine, tenant_slug)["suspended"] == {("g1", "b"), ("g1", "c")}
    # a full read in which c is still soft-deleted but b is gone for good
    script.rounds["users"].append([[user("a"), gone("c", "changed")]])
    script.rounds["groups"].append([[group("g1", ["a"])]])
    script.rounds["users"][0] = script.rounds["users"][2]
    script.rounds["groups"][0] = script.rounds["groups"][2]
    run(engine, settings(tenant_slug), full=True)
    got = staged(engine, tenant_slug)
    assert got["members"] == {("g1", "a")} and got["suspended"] == {("g1", "c")}


# -- hidden-membership groups -------------------------------------------------------------------


def test_a_hidden_group_refused_with_403_is_a_partial_read_of_that_group_only(
    engine, graph, tenant_slug
):
    """group-list-members.md: members of a group with `visibility: HiddenMembership` need
    Member.Read.Hidden; without it the `$batch` item answers 403 Authorization_RequestDenied
    (errors.md's shape). The group is recorded, its memberships kept as last read."""
    script, settings = graph
    script.rounds["users"] = [[[user("a"), user("b")]], [[]]]
    hidden = {"visibility": "HiddenMembership"}
    script.rounds["groups"] = [[[group("g1", ["a"]), group("gh", **hidden)]], [[]]]
    script.members = {"gh": ["a", "b"]}
    script.count("users", 2)
    script.count("groups", 2)
    run(engine, settings(tenant_slug))  # granted: the hidden group read whole
    assert staged(engine, tenant_slug)["members"] == {("g1", "a"), ("gh", "a"), ("gh", "b")}

    def refused(requests: list[dict[str, Any]]) -> Answer:
        denied = _error("Authorization_RequestDenied", "Insufficient privileges.")
        return 200, {"responses": [_inner(r["id"], 403, denied) for r in requests]}

    script.batches = [refused]
    result, _ = run(engine, settings(tenant_slug))
    assert set(result.unreadable) == {"gh"}
    assert result.unreadable["gh"]["permission"] == "Member.Read.Hidden"
    assert staged(engine, tenant_slug)["members"] == {("g1", "a"), ("gh", "a"), ("gh", "b")}
