"""`tenant setup`: the wizard end to end with scripted answers, against the fake Graph."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipeline.cli import main
from sync_pipeline.cli.wizard import STEPS, draft_path
from sync_pipeline.registry import tenants
from sync_pipeline_tests.support.fakegraph import FAKE_SECRET


def group_id(doc: dict, name: str) -> str:
    return next(g["id"] for g in doc["groups"] if g["displayName"] == name)


def stored(engine, slug: str):
    with engine.connect() as conn:
        return tenants.get(conn, slug)


@pytest.fixture
def staff_group(engine, tenant_slug):
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO app.groups (tenant, name, source) VALUES (:t, 'Staff', 'app')"),
            {"t": tenant_slug},
        )


def test_every_step_with_bad_answers_re_asked_then_a_test_sync(
    register, fake_tenant, engine, tenant_slug, staff_group, database_url
):
    register(tenant_slug)
    all_staff = group_id(fake_tenant, "All Staff")
    falcon = group_id(fake_tenant, "Project Falcon")
    answers = [
        "y",  # 1 keep the registered sign-in details
        "y",  # 2 automatic sync
        "25:00",  # bad time: asked again
        "02:30",
        "Mars/Olympus",  # bad zone: asked again
        "Europe/London",
        "bogus",  # 3 unknown email method: asked again
        "mail_then_upn",
        "y",  # 4 import groups
        "selected_groups",  # 5 user scope
        "999",  # no such group number: asked again
        all_staff,
        "y",  # 6 map groups
        "both",  # 7 group types
        "",  # 8 import every group of those types
        f"{falcon}=Ghost",  # no such app group: asked again
        f"{falcon}=Staff",
        "y",  # 9 exclude unlicensed
        "y",  # 10 import managers
        "not-an-address",  # 11 bad deny-list entry: asked again
        "CEO@fabrikam.example, *@contractors.fabrikam.example",
        "it@fabrikam.example",  # 12 admin address
        "y",  # run the test sync
    ]
    result = CliRunner().invoke(
        main, ["tenant", "setup", tenant_slug], input="\n".join(answers) + "\n"
    )
    out = result.output
    assert result.exit_code == 0, out
    # the steps, in the product's order
    positions = [out.index(f"Step {n}/{len(STEPS)}: {name}") for n, name in enumerate(STEPS, 1)]
    assert positions == sorted(positions)
    s = stored(engine, tenant_slug).settings
    assert f"{s.authority_host}/{s.tenant_id}/adminconsent?client_id={s.client_id}" in out
    assert "All Staff" in out and "Project Falcon" in out  # real groups shown
    assert out.count("try again") >= 4 and "Ghost" in out and "not-an-address" in out
    assert (s.auto_sync, s.sync_time, s.timezone) == (True, dt.time(2, 30), "Europe/London")
    assert s.email_method == "mail_then_upn"
    assert (s.user_scope, s.scope_group_ids) == ("selected_groups", [all_staff])
    assert (s.group_mapping_enabled, s.group_mapping, s.group_ids) == (True, {falcon: "Staff"}, [])
    assert s.group_types == ["microsoft365", "security"]
    assert (s.exclude_unlicensed, s.import_managers) == (True, True)
    assert s.email_deny_list == ["CEO@fabrikam.example", "*@contractors.fabrikam.example"]
    assert s.admin_email == "it@fabrikam.example"
    assert "dry run: app unchanged" in out  # the test sync ran
    assert "syncs automatically every day at 02:30 Europe/London" in out
    with engine.connect() as conn:
        app_users = conn.execute(
            sa.text("SELECT count(*) FROM app.users WHERE tenant = :t"), {"t": tenant_slug}
        ).scalar()
        snapshot = conn.execute(
            sa.text("SELECT count(*) FROM sync.snapshot_users WHERE tenant = :t AND included"),
            {"t": tenant_slug},
        ).scalar()
    assert app_users == 0 and snapshot > 0


def test_defaults_accepted_and_test_sync_declined(register, engine, tenant_slug, database_url):
    register(tenant_slug, import_managers=True)
    answers = [
        "",  # keep sign-in
        "n",  # no automatic sync
        "",  # email method: keep upn
        "n",  # no groups: steps 6 to 8 are skipped
        "",  # scope: all
        "",  # exclude unlicensed: keep false
        "",  # import managers: keep true
        "",  # deny list: none
        "",  # no admin address
        "n",  # no test sync now
    ]
    result = CliRunner().invoke(
        main, ["tenant", "setup", tenant_slug], input="\n".join(answers) + "\n"
    )
    assert result.exit_code == 0, result.output
    assert f"sync-pipeline sync {tenant_slug} --dry-run" in result.output
    assert result.output.count("Skipped: groups are not imported") == 3
    t = stored(engine, tenant_slug)
    assert t.version == 2
    assert (t.settings.auto_sync, t.settings.include_groups, t.settings.import_managers) == (
        False,
        False,
        True,
    )


def test_new_tenant_sign_in_asked_and_a_refused_secret_saves_nothing(
    fake_graph, fake_tenant, engine, tenant_slug, database_url
):
    # An unregistered tenant: the wizard asks the sign-in details; the fake Graph refuses the
    # secret, and declining to retry saves nothing.
    tid, cid = fake_tenant["tenant_id"], fake_tenant["client_id"]
    answers = [
        "application",
        "nope",  # not a GUID: asked again
        tid,
        cid,
        "BAD NAME",  # not an environment variable name: asked again
        "SP_WIZARD_WRONG_SECRET",
        "custom",
        "http://graph.example",  # not https: asked again
        fake_graph.base_url,
        fake_graph.base_url,
        str(fake_graph.ca_path),
        "stop",  # do not retry: stop and resume later
    ]
    result = CliRunner().invoke(
        main,
        ["tenant", "setup", tenant_slug],
        input="\n".join(answers) + "\n",
        env={"SP_WIZARD_WRONG_SECRET": "not-the-secret"},
    )
    out = result.output
    assert "is not a GUID" in out and "graph_base_url" in out and "client_secret_env" in out
    assert f"{fake_graph.base_url}/{tid}/adminconsent?client_id={cid}" in out
    assert "not-the-secret" not in out  # secrets never shown
    assert result.exit_code == 1
    with engine.connect() as conn, pytest.raises(tenants.UnknownTenantError):
        tenants.get(conn, tenant_slug)


def test_delegated_sign_in_with_a_device_code(
    fake_tenant, engine, tenant_slug, database_url, tmp_path, monkeypatch
):
    import threading

    import sqlalchemy as sa
    from cryptography.fernet import Fernet

    from sync_pipeline.fakegraph import FakeGraph

    monkeypatch.setenv("SYNC_PIPELINE_SECRET_KEY", Fernet.generate_key().decode())
    fake = FakeGraph([fake_tenant], secrets={}, state_dir=tmp_path, device_code_interval=1)
    fake.start()
    done = threading.Event()

    def admin_approves() -> None:  # the admin types the code in a browser
        while not done.is_set():
            for code in fake.pending_user_codes(fake_tenant["tenant_id"]):
                fake.approve_device_code(code)
            done.wait(0.2)  # a browser's pace; ends as soon as the wizard is done

    threading.Thread(target=admin_approves, daemon=True).start()
    answers = [
        "delegated",
        fake_tenant["tenant_id"],
        fake_tenant["client_id"],
        "custom",
        fake.base_url,
        fake.base_url,
        str(fake.ca_path),
        "n",  # no automatic sync
        "",  # email method
        "n",  # no groups
        "",  # scope: all
        "",  # exclude unlicensed
        "",  # import managers
        "",  # deny list
        "",  # admin address: keep the signed-in admin's
        "n",  # no test sync now
    ]
    try:
        result = CliRunner().invoke(
            main, ["tenant", "setup", tenant_slug], input="\n".join(answers) + "\n"
        )
    finally:
        done.set()
        fake.stop()
    assert result.exit_code == 0, result.output
    admin = next(
        u for u in fake_tenant["users"] if u["accountEnabled"] and u["userType"] == "Member"
    )
    assert f"Signed in as {admin['userPrincipalName']}" in result.output
    t = stored(engine, tenant_slug)
    assert t.settings.auth_mode == "delegated" and t.settings.client_secret_env is None
    assert t.settings.admin_email == admin["userPrincipalName"]
    with engine.connect() as conn:
        account = conn.execute(
            sa.text("SELECT account FROM sync.token_caches WHERE tenant = :t"), {"t": tenant_slug}
        ).scalar_one()
    assert account == admin["userPrincipalName"]


def test_back_returns_to_the_previous_step_that_asks_something(register, engine, tenant_slug):
    register(tenant_slug)
    answers = [
        "",  # 1 keep sign-in
        "n",  # 2 no automatic sync
        "back",  # 3 email method: back to step 2
        "y",  # 2 again: automatic sync after all
        "03:00",
        "<",  # the time zone prompt: back to step 1
        "",  # 1 keep sign-in
        "y",  # 2
        "03:00",
        "UTC",
        "upn",  # 3
        "n",  # 4 no groups
        "",  # 5 scope: all (6 to 8 are skipped)
        "back",  # 9: back past the skipped steps, to step 5
        "",  # 5 scope: all
        "",  # 9 exclude unlicensed
        "",  # 10 import managers
        "",  # 11 deny list
        "",  # 12 no admin address
        "n",  # no test sync now
        "n",  # do not turn the daily sync on without one
    ]
    result = CliRunner().invoke(
        main, ["tenant", "setup", tenant_slug], input="\n".join(answers) + "\n"
    )
    out = result.output
    assert result.exit_code == 0, out
    assert out.count("Back to the previous step") == 3
    assert out.count(f"Step 1/{len(STEPS)}: auth") == 2
    assert out.count(f"Step 2/{len(STEPS)}: automatic sync") == 3
    assert out.count(f"Step 5/{len(STEPS)}: select groups manually") == 2
    s = stored(engine, tenant_slug).settings
    assert s.sync_time == dt.time(3, 0) and s.include_groups is False
    # auto_sync was asked for, but no test sync ran: saved off, and said so
    assert s.auto_sync is False
    flat = " ".join(out.split())  # rich wraps at the terminal's width
    assert "the daily sync stays off until the test sync succeeds" in flat
    assert f"sync-pipeline tenant set {tenant_slug} auto_sync=true" in out  # unwrapped: copyable
    assert "saved with its daily sync off" in flat


def test_unset_secret_pauses_then_resumes_and_auto_sync_waits_for_the_test_sync(
    fake_graph, fake_tenant, engine, tenant_slug, database_url, monkeypatch
):
    # The secret's variable is unset in this shell: the wizard cannot read Graph, so it offers
    # to stop (not to retry), keeps the answers, and says how to resume.
    monkeypatch.delenv("SMTP_HOST", raising=False)
    env_name = "SP_WIZARD_UNSET_SECRET"
    monkeypatch.delenv(env_name, raising=False)
    tid, cid = fake_tenant["tenant_id"], fake_tenant["client_id"]
    answers = ["application", tid, cid, env_name, "custom"]
    answers += [fake_graph.base_url, fake_graph.base_url, str(fake_graph.ca_path), "stop"]
    result = CliRunner().invoke(
        main, ["tenant", "setup", tenant_slug], input="\n".join(answers) + "\n"
    )
    out = result.output
    assert result.exit_code == 1, out
    out = " ".join(out.split())  # rich wraps at the terminal's width
    assert f"${env_name} is not set in this shell" in out
    assert "retry" not in out.lower().split("is not set in this shell")[1]  # no pointless loop
    assert f"export {env_name}=" in out and f"sync-pipeline tenant setup {tenant_slug}" in out
    assert draft_path(tenant_slug).is_file()
    with engine.connect() as conn, pytest.raises(tenants.UnknownTenantError):
        tenants.get(conn, tenant_slug)

    # Resumed with the variable set: the earlier answers are kept. The settings ask for the
    # daily sync; they are saved with it off, and it is turned on after the test sync passed.
    # Managers are not imported: nothing reads them from Graph (they ride along the users
    # delta as manager@delta, at no extra request).
    monkeypatch.setenv(env_name, FAKE_SECRET)
    fake_graph.reset_stats()
    answers = [
        "y",  # resume from the draft
        "y",  # keep the sign-in details of the draft
        "y",  # 2 automatic sync
        "04:15",
        "UTC",
        "",  # 3
        "n",  # 4 no groups
        "",  # 5
        "",  # 9
        "n",  # 10 no managers
        "",  # 11
        "it@fabrikam.example",  # 12
        "y",  # run the test sync
    ]
    result = CliRunner().invoke(
        main, ["tenant", "setup", tenant_slug], input="\n".join(answers) + "\n"
    )
    out = " ".join(result.output.split())
    assert result.exit_code == 0, out
    assert "unfinished setup" in out and not draft_path(tenant_slug).exists()
    assert "dry run: app unchanged" in out
    t = stored(engine, tenant_slug)
    assert t.settings.auto_sync is True and t.settings.import_managers is False
    with engine.connect() as conn:
        earlier = tenants.history(conn, tenant_slug)
    assert [v.settings.get("auto_sync") for v in earlier] == [False]  # saved off first
    assert "test sync succeeded:" in out, out[-3000:]
    assert out.index("stays off until the test sync succeeds") < out.index("test sync succeeded:")
    assert "syncs automatically every day at 04:15 UTC" in out
    # no SMTP: the wizard says where the report went
    written = out.split("it was written to ")[1].split()[0]
    assert written.endswith(".eml") and "it@fabrikam.example" in open(written).read()
    # managers: not one request names them
    assert not [e for e in fake_graph.stats["requests"] if "manager" in e.lower()]
    # nor does explain read Graph at all
    before = fake_graph.stats["total_requests"]
    someone = next(u for u in fake_tenant["users"] if u["accountEnabled"])
    result = CliRunner().invoke(main, ["explain", tenant_slug, someone["userPrincipalName"]])
    assert result.exit_code == 0, result.output
    assert fake_graph.stats["total_requests"] == before
