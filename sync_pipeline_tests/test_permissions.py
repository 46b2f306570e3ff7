"""A missing Graph permission (docs/graph.md: 403 `Authorization_RequestDenied`, "say which
permission"): the fake Graph withdraws an application permission through its admin API, the
calls that need it get Graph's 403 error body (which does not name the permission), and a
sync fails naming the tenant and the permission, writes nothing to staging, the delta links
or app.*, and leaks no secret. Real Postgres, the fake Graph over HTTPS through msal."""

from __future__ import annotations

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from sync_pipeline.fakegraph import FakeGraph, generate_tenant
from sync_pipeline_tests.support.fakegraph import FAKE_SECRET, new_tenant, start_fake
from sync_pipeline_tests.support.pipeline import materialise

STATE = {
    "staging.users": "SELECT id, user_principal_name FROM staging.users WHERE tenant = :t",
    "staging.groups": "SELECT id, display_name FROM staging.groups WHERE tenant = :t",
    "staging.group_members": "SELECT group_id, member_id FROM staging.group_members "
    "WHERE tenant = :t",
    "staging.user_managers": "SELECT user_id, manager_id FROM staging.user_managers "
    "WHERE tenant = :t",
    "staging.user_licences": "SELECT user_id, sku_id FROM staging.user_licences WHERE tenant = :t",
    "staging.subscribed_skus": "SELECT sku_id FROM staging.subscribed_skus WHERE tenant = :t",
    "staging.extractions": "SELECT * FROM staging.extractions WHERE tenant = :t",
    "sync.delta_state": "SELECT entity, delta_link FROM sync.delta_state WHERE tenant = :t",
    "app.users": "SELECT * FROM app.users WHERE tenant = :t",
    "app.groups": "SELECT * FROM app.groups WHERE tenant = :t",
    "app.group_members": "SELECT * FROM app.group_members WHERE tenant = :t",
}


@pytest.fixture(scope="module")
def doc() -> dict:
    return generate_tenant(name="tailspin-perm", users=60, seed=23, domain="tailspin.example")


@pytest.fixture(scope="module")
def fake(doc, tmp_path_factory):
    server = start_fake([doc], tmp_path_factory.mktemp("fakegraph-permissions"))
    yield server
    server.stop()


def admin(fake: FakeGraph, doc: dict, body: dict) -> list[str]:
    """The fake's admin HTTP API (what an operator of the fake would call)."""
    http = requests.Session()
    http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    resp = http.post(
        f"{fake.base_url}/_admin/tenants/{doc['tenant_id']}/permissions",
        json=body,
        verify=str(fake.ca_path),
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()["withdrawn"]


def state(engine: sa.Engine, slug: str) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            name: sorted(tuple(map(str, r)) for r in conn.execute(sa.text(sql), {"t": slug}))
            for name, sql in STATE.items()
        }


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["graph_directory"]
    return failures[0].step_failure_data.error.message


def assert_no_secret(instance, result, engine, slug: str) -> None:
    """Neither the client secret nor a bearer token in the run's events or sync.runs."""
    logged = "\n".join(str(r) for r in instance.all_logs(result.run_id))
    with engine.connect() as conn:
        logged += "\n".join(
            str(r.error)
            for r in conn.execute(
                sa.text("SELECT error FROM sync.runs WHERE tenant = :t"), {"t": slug}
            )
        )
    assert FAKE_SECRET not in logged
    assert "Bearer " not in logged
    assert "eyJ" not in logged  # no JWT (an access token or a client assertion)


def test_the_fake_answers_403_without_naming_the_permission(fake, doc):
    """What Graph does: the reads needing the withdrawn permission get 403 with code
    Authorization_RequestDenied and a generic message; the others still work."""
    assert admin(fake, doc, {"withdraw": ["GroupMember.Read.All"]}) == ["GroupMember.Read.All"]
    try:
        import msal

        http = requests.Session()
        http.trust_env = False
        http.verify = str(fake.ca_path)
        app = msal.ConfidentialClientApplication(
            doc["client_id"],
            client_credential=FAKE_SECRET,
            authority=f"{fake.base_url}/{doc['tenant_id']}",
            instance_discovery=False,
            http_client=http,
        )
        token = app.acquire_token_for_client(scopes=[f"{fake.base_url}/.default"])
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        denied = http.get(f"{fake.base_url}/v1.0/groups?$select=id", headers=auth, timeout=10)
        assert denied.status_code == 403
        error = denied.json()["error"]
        assert error["code"] == "Authorization_RequestDenied"
        assert "GroupMember" not in error["message"]
        assert error["innerError"]["request-id"]
        assert http.get(f"{fake.base_url}/v1.0/users?$select=id", headers=auth).status_code == 200
        batch = http.post(
            f"{fake.base_url}/v1.0/$batch",
            json={"requests": [{"id": "1", "method": "GET", "url": "/groups?$select=id"}]},
            headers=auth,
            timeout=10,
        )
        assert batch.status_code == 200
        assert batch.json()["responses"][0]["status"] == 403
    finally:
        assert admin(fake, doc, {"grant": ["GroupMember.Read.All"]}) == []
    with pytest.raises(requests.HTTPError):
        admin(fake, doc, {"withdraw": ["Group.ReadWrite.Everything"]})


def test_a_withdrawn_permission_fails_the_sync_naming_it_and_changes_nothing(
    instance, database_url, engine, doc, fake
):
    slug = new_tenant(engine, "perm", doc, fake)
    assert materialise(instance, slug, database_url=database_url, raise_on_error=False).success
    before = state(engine, slug)
    assert before["app.users"] and before["staging.group_members"]

    # a change the next read would bring, then consent for group reads is revoked
    fake.add_user(doc["tenant_id"], {"userPrincipalName": "late.joiner@tailspin.example"})
    admin(fake, doc, {"withdraw": ["GroupMember.Read.All"]})
    try:
        result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    finally:
        admin(fake, doc, {"grant": ["GroupMember.Read.All"]})
    assert not result.success
    message = failure_message(result)
    assert f"tenant {slug}" in message
    assert "GroupMember.Read.All" in message
    assert "403" in message and "Authorization_RequestDenied" in message
    assert "grant admin consent" in message
    assert not result.get_asset_check_evaluations()  # nothing downstream ran
    assert state(engine, slug) == before  # staging, delta links and app.* untouched
    assert_no_secret(instance, result, engine, slug)

    # with the permission back, the same sync brings the change
    again = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert again.success
    users = {r[1] for r in state(engine, slug)["staging.users"]}
    assert "late.joiner@tailspin.example" in users


@pytest.mark.parametrize("permission", ["User.Read.All", "Organization.Read.All"])
def test_a_first_sync_without_a_permission_writes_nothing(
    instance, database_url, engine, doc, fake, permission
):
    slug = new_tenant(engine, "perm", doc, fake)
    admin(fake, doc, {"withdraw": [permission]})
    try:
        result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    finally:
        admin(fake, doc, {"grant": [permission]})
    assert not result.success
    message = failure_message(result)
    assert f"tenant {slug}" in message and permission in message
    assert all(not rows for rows in state(engine, slug).values())
    with engine.connect() as conn:
        error = conn.execute(
            sa.text("SELECT error FROM sync.runs WHERE tenant = :t AND dagster_run_id = :r"),
            {"t": slug, "r": result.run_id},
        ).scalar()
    assert error is not None and permission in error  # the run's history says it too
    assert_no_secret(instance, result, engine, slug)
