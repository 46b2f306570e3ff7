"""The settings model, its versioned storage, and `tenant add|set|show` with their checks."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipeline.cli import main
from sync_pipeline.core import settings
from sync_pipeline.core.settings import SettingsError, TenantSettings
from sync_pipeline.registry import tenants

ZERO = "00000000-0000-0000-0000-000000000000"
BASE = {"tenant_id": ZERO, "client_id": ZERO, "client_secret_env": "X_SECRET"}


def make(slug: str = "acme", **kw) -> TenantSettings:
    return settings.parse_settings({"slug": slug, **BASE, **kw})


def test_defaults_follow_the_design():
    s = make()
    assert (s.auth_mode, s.graph_base_url, s.authority_host) == (
        "application",
        "https://graph.microsoft.com",
        "https://login.microsoftonline.com",
    )
    assert (s.auto_sync, s.timezone, s.email_method) == (True, "UTC", "upn")
    assert dt.time(0, 0) <= s.effective_sync_time < dt.time(6, 0)
    assert s.effective_sync_time == make().effective_sync_time  # stable per slug
    assert (s.include_groups, s.user_scope, s.scope_group_ids) == (True, "all", [])
    assert (s.group_mapping_enabled, s.group_types) == (False, ["microsoft365", "security"])
    assert (s.group_ids, s.group_mapping, s.email_deny_list) == ([], {}, [])
    assert (s.exclude_unlicensed, s.import_managers) == (False, False)
    assert (s.include_disabled, s.include_guests, s.admin_email) == (False, False, None)
    assert (s.max_deactivation_percent, s.max_deactivations) == (10.0, 500)
    assert s.to_document() == {"slug": "acme", **BASE}


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("email_method", "smtp_only", ["email_method", "smtp_only"]),
        ("timezone", "Mars/Olympus", ["timezone", "Mars/Olympus", "IANA"]),
        ("email_deny_list", ["ok@x.com", "not an address"], ["email_deny_list", "not an address"]),
        ("email_deny_list", ["*@*.com"], ["email_deny_list", "*@*.com"]),
        ("group_types", [], ["group_types"]),
        ("group_types", ["distribution"], ["group_types", "distribution"]),
        ("client_secret_env", "s3cr3t value!", ["client_secret_env", "NAME"]),
        (
            "graph_base_url",
            "https://graph.microsoft.com/v1.0",
            ["graph_base_url", "without a path"],
        ),
        ("max_deactivation_percent", 150, ["max_deactivation_percent", "150"]),
        ("admin_email", "nobody", ["admin_email", "nobody"]),
        ("group_mapping", {"gid": " "}, ["group_mapping", "gid"]),
        ("colour", "blue", ["unknown setting", "colour"]),
    ],
)
def test_bad_values_name_tenant_field_and_value(field, value, words):
    doc = {"slug": "acme", **BASE, "group_mapping_enabled": True, field: value}
    with pytest.raises(SettingsError) as err:
        settings.parse_settings(doc)
    for word in ["tenant acme", *words]:
        assert word in str(err.value)


def test_cross_field_rules():
    with pytest.raises(SettingsError, match="scope_group_ids"):
        make(user_scope="selected_groups")
    with pytest.raises(SettingsError, match="group_mapping_enabled"):
        make(group_mapping={"g": "Staff"})
    with pytest.raises(SettingsError, match="client_secret_env or client_certificate_path"):
        settings.parse_settings({"slug": "acme", "tenant_id": ZERO, "client_id": ZERO})


def test_assign_coerces_through_the_model():
    s = settings.assign(
        make(),
        {
            "exclude_unlicensed": "true",
            "max_deactivations": "25",
            "max_deactivation_percent": "2.5",
            "sync_time": "03:00",
            "group_types": "security",
            "scope_group_ids": "g1, g2",
            "user_scope": "selected_groups",
            "group_mapping_enabled": "yes",
            "group_mapping": "g1=Staff,g2=Sales team",
            "email_deny_list": "[a@b.com, '*@c.com']",
            "admin_email": "it@acme.com",
        },
    )
    assert s.exclude_unlicensed is True and s.max_deactivations == 25
    assert s.max_deactivation_percent == 2.5 and s.sync_time == dt.time(3, 0)
    assert s.group_types == ["security"] and s.scope_group_ids == ["g1", "g2"]
    assert s.group_mapping == {"g1": "Staff", "g2": "Sales team"}
    assert s.email_deny_list == ["a@b.com", "*@c.com"]
    back = settings.assign(s, {"admin_email": "", "max_deactivations": ""})
    assert back.admin_email is None and back.max_deactivations == 500
    with pytest.raises(SettingsError, match=r"tenant acme: unknown setting 'colour'"):
        settings.assign(s, {"colour": "red"})
    with pytest.raises(SettingsError, match=r"email_method.*'nope'"):
        settings.assign(s, {"email_method": "nope"})


def test_deny_list_from_csv():
    text = "name,email\nCEO,ceo@acme.com\nContractors,*@contractors.acme.com\n,CEO@ACME.COM\n"
    assert settings.deny_list_from_csv(text, source="d.csv", slug="acme") == [
        "ceo@acme.com",
        "*@contractors.acme.com",
    ]
    with pytest.raises(SettingsError) as err:
        settings.deny_list_from_csv("a@b.com\nbroken@\n", source="d.csv", slug="acme")
    assert "tenant acme" in str(err.value) and "line 2" in str(err.value)
    assert "'broken@'" in str(err.value) and "email_deny_list" in str(err.value)


def test_yaml_round_trip_of_every_setting():
    s = make(
        display_name="Acme",
        auto_sync=False,
        sync_time="04:30",
        timezone="Europe/London",
        email_method="primary_smtp_then_upn",
        include_groups=True,
        user_scope="selected_groups",
        scope_group_ids=["g1"],
        group_mapping_enabled=True,
        group_types=["security"],
        group_ids=["g1", "g2"],
        group_mapping={"g2": "Staff"},
        exclude_unlicensed=True,
        import_managers=True,
        email_deny_list=["x@acme.com", "*@y.acme.com"],
        include_disabled=True,
        include_guests=True,
        admin_email="it@acme.com",
        max_deactivation_percent=5,
        max_deactivations=20,
    )
    text = settings.dump_yaml([s])
    assert settings.load_yaml(text) == [s]
    assert settings.dump_yaml(settings.load_yaml(text)) == text


# -- storage -------------------------------------------------------------------------------------


def test_every_change_keeps_the_previous_version(engine, tenant_slug):
    with engine.begin() as conn:
        assert tenants.save(conn, make(tenant_slug)) == 1
        assert tenants.save(conn, make(tenant_slug)) is None  # unchanged: no new version
        assert tenants.save(conn, make(tenant_slug, email_method="mail")) == 2
        assert tenants.save(conn, make(tenant_slug, email_method="upn")) == 3
    with engine.connect() as conn:
        stored = tenants.get(conn, tenant_slug)
        past = tenants.history(conn, tenant_slug)
    assert stored.version == 3 and stored.settings.email_method == "upn"
    assert [p.version for p in past] == [2, 1]
    assert past[0].settings["email_method"] == "mail" and "email_method" not in past[1].settings
    assert past[1].valid_from <= past[1].replaced_at <= past[0].replaced_at


def test_removed_then_added_again_continues_the_versions(engine, tenant_slug):
    with engine.begin() as conn:
        tenants.save(conn, make(tenant_slug))
        tenants.save(conn, make(tenant_slug, import_managers=True))
        assert tenants.remove(conn, tenant_slug)
        assert tenants.save(conn, make(tenant_slug)) == 3
        assert tenants.save(conn, make(tenant_slug, include_guests=True)) == 4
    with engine.connect() as conn:
        assert [p.version for p in tenants.history(conn, tenant_slug)] == [3, 2, 1]


# -- checks against the app and Graph ------------------------------------------------------------


def add_app_group(engine, tenant: str, name: str, source: str = "app") -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO app.groups (tenant, name, source) VALUES (:t, :n, :s)"),
            {"t": tenant, "n": name, "s": source},
        )


def test_mapping_target_must_exist_in_the_app(engine, tenant_slug):
    add_app_group(engine, tenant_slug, "Staff")
    add_app_group(engine, tenant_slug, "Synced", source="m365")
    ok = make(tenant_slug, group_mapping_enabled=True, group_mapping={"g1": "Staff"})
    with engine.connect() as conn:
        tenants.validate_against_app(conn, ok)
        for name, hint in (("staff", "did you mean 'Staff'"), ("Synced", "'Staff'")):
            bad = make(tenant_slug, group_mapping_enabled=True, group_mapping={"g1": name})
            with pytest.raises(SettingsError) as err:
                tenants.validate_against_app(conn, bad)
            assert f"tenant {tenant_slug}: group_mapping g1 = {name!r}" in str(err.value)
            assert hint in str(err.value)


def test_group_ids_must_exist_in_graph(fake_tenant, fake_graph, tenant_slug):
    from sync_pipeline_tests.support.fakegraph import settings_for

    real = fake_tenant["groups"][0]["id"]
    ok = settings_for(
        tenant_slug, fake_tenant, fake_graph, user_scope="selected_groups", scope_group_ids=[real]
    )
    tenants.validate_against_graph(ok)
    bad = ok.model_copy(update={"group_ids": [real, "no-such-group"]})
    with pytest.raises(SettingsError) as err:
        tenants.validate_against_graph(bad)
    assert f"tenant {tenant_slug}: group_ids names group 'no-such-group'" in str(err.value)
    tenants.validate_against_graph(bad, only={real})  # only the new ids are read


def test_check_before_run_uses_app_and_staging(engine, tenant_slug):
    s = make(tenant_slug, user_scope="selected_groups", scope_group_ids=["g1", "gone"])
    with engine.begin() as conn:
        tenants.check_before_run(conn, s)  # nothing extracted yet: nothing to check against
        conn.execute(
            sa.text("INSERT INTO staging.groups (tenant, id) VALUES (:t, 'g1')"), {"t": tenant_slug}
        )
        conn.execute(
            sa.text(
                "INSERT INTO staging.extractions (tenant, entity, rows, requests)"
                " VALUES (:t, 'groups', 1, 1)"
            ),
            {"t": tenant_slug},
        )
        with pytest.raises(SettingsError, match=r"scope_group_ids names group 'gone'"):
            tenants.check_before_run(conn, s)
        mapped = make(tenant_slug, group_mapping_enabled=True, group_mapping={"g1": "Nope"})
        with pytest.raises(SettingsError, match=r"group_mapping g1 = 'Nope'"):
            tenants.check_before_run(conn, mapped)


# -- the commands --------------------------------------------------------------------------------


def test_add_with_prompts_then_set_then_history(cli, engine, tenant_slug, tmp_path):
    answers = f"not-a-guid\n{ZERO}\n{ZERO}\n\n"
    added = cli("tenant", "add", tenant_slug, "email_method=mail", input=answers)
    assert added.exit_code == 0, added.output
    assert "is not a GUID" in added.output  # re-asked
    env = tenant_slug.upper().replace("-", "_") + "_GRAPH_SECRET"
    again = cli("tenant", "add", tenant_slug, "--tenant-id", ZERO, "--client-id", ZERO)
    assert again.exit_code == 2
    csv_file = tmp_path / "deny.csv"
    csv_file.write_text("email\nceo@acme.com\n*@contractors.acme.com\n")
    changed = cli(
        "tenant",
        "set",
        tenant_slug,
        "exclude_unlicensed=true",
        "timezone=Europe/Paris",
        "--deny-list-csv",
        str(csv_file),
    )
    assert changed.exit_code == 0, changed.output
    assert "version 2" in changed.output
    with engine.connect() as conn:
        s = tenants.get(conn, tenant_slug).settings
    assert (s.client_secret_env, s.email_method, s.exclude_unlicensed) == (env, "mail", True)
    assert s.email_deny_list == ["ceo@acme.com", "*@contractors.acme.com"]
    shown = cli("tenant", "show", tenant_slug, "--history")
    assert shown.exit_code == 0
    assert "v1" in shown.output and "email_deny_list" in shown.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["email_method=smtp"], ["email_method", "'smtp'"]),
        (["timezone=Nowhere/Land"], ["timezone", "Nowhere/Land"]),
        (["email_deny_list=ok@x.com,nope"], ["email_deny_list", "nope"]),
        (["group_mapping_enabled=true", "group_mapping=g1=Ghost"], ["group_mapping", "Ghost"]),
        (["nonsense"], ["key=value"]),
    ],
)
def test_set_refuses_bad_values_and_writes_nothing(cli, engine, tenant_slug, args, words):
    with engine.begin() as conn:
        tenants.save(conn, make(tenant_slug))
    result = cli("tenant", "set", tenant_slug, *args)
    assert result.exit_code == 2
    for word in [f"tenant {tenant_slug}", *words]:
        assert word in result.output
    with engine.connect() as conn:
        assert tenants.get(conn, tenant_slug).version == 1


def test_set_refuses_a_scope_group_missing_in_graph(cli, register, engine, tenant_slug):
    register(tenant_slug)
    result = cli("tenant", "set", tenant_slug, "user_scope=selected_groups", "scope_group_ids=zz")
    assert result.exit_code == 2
    assert f"tenant {tenant_slug}: scope_group_ids names group 'zz'" in result.output
    with engine.connect() as conn:
        assert tenants.get(conn, tenant_slug).version == 1


def test_import_refuses_a_mapping_target_missing_in_the_app(cli, tmp_path, engine, tenant_slug):
    doc = make(tenant_slug, group_mapping_enabled=True, group_mapping={"g": "Staff"})
    path = tmp_path / "t.yaml"
    path.write_text(settings.dump_yaml([doc]))
    refused = cli("tenant", "import", str(path), "--no-graph-check")
    assert refused.exit_code == 2 and "'Staff'" in refused.output
    add_app_group(engine, tenant_slug, "Staff")
    assert cli("tenant", "import", str(path), "--no-graph-check").exit_code == 0


@pytest.mark.parametrize(
    "args",
    [["tenant", "add"], ["tenant", "set"], ["tenant", "setup"], ["explain"]],
    ids=" ".join,
)
def test_new_commands_have_help(args):
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_a_tenant_pointed_at_another_directory_starts_clean(engine, tenant_slug):
    """Changing tenant_id, client_id or graph_base_url discards the slug's staging rows and
    delta links with the settings change (an incremental read mixed two directories); any
    other change keeps them. The app's rows stay."""
    import sqlalchemy as sa

    from sync_pipeline.registry import tenants
    from sync_pipeline_tests.support.rows import make_settings, stage, user

    settings = make_settings(tenant_slug)
    with engine.begin() as conn:
        tenants.save(conn, settings)
        stage(conn, tenant_slug, users=[user("u1")], groups=[], members={}, managers={})
        conn.execute(
            sa.text(
                "INSERT INTO sync.delta_state (tenant, entity, delta_link)"
                " VALUES (:t, 'users', 'https://graph.example/delta?token=x')"
            ),
            {"t": tenant_slug},
        )

    def kept() -> tuple[int, int, int]:
        with engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM staging.users WHERE tenant = :t),"
                    " (SELECT count(*) FROM sync.delta_state WHERE tenant = :t),"
                    " (SELECT count(*) FROM sync.touched WHERE tenant = :t AND kind = 'full')"
                ),
                {"t": tenant_slug},
            ).one()

    with engine.begin() as conn:
        tenants.save(conn, settings.model_copy(update={"timezone": "Europe/Paris"}))
    assert kept() == (1, 1, 0)  # another setting: the directory is the same
    other = "11111111-1111-1111-1111-111111111111"
    with engine.begin() as conn:
        tenants.save(conn, settings.model_copy(update={"tenant_id": other}))
    assert kept() == (0, 0, 1)  # another directory: clean, the next read is full
