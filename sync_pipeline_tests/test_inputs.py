"""Every bad input refused up front, saying what and why, exit 2, nothing written: through the
real command (click's runner), real Postgres, the fake Graph for the wizard."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from sync_pipeline.cli import main
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.registry import tenants

ZERO = "00000000-0000-0000-0000-000000000000"
BASE = {"tenant_id": ZERO, "client_id": ZERO, "client_secret_env": "SP_INPUTS_SECRET"}
PYDANTIC_WORDS = ("Input should", "validation error", "Value error", "pydantic", "type=")


@pytest.fixture
def cli(database_url, monkeypatch):
    monkeypatch.setenv("SP_INPUTS_SECRET", "set-here")
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict | None = None):
        return runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


def stored_version(engine, slug: str) -> int | None:
    with engine.connect() as conn:
        try:
            return tenants.get(conn, slug).version
        except tenants.UnknownTenantError:
            return None


def registered(engine, slug: str, **extra) -> None:
    with engine.begin() as conn:
        tenants.save(conn, TenantSettings(slug=slug, **BASE, **extra))


def write_yaml(path, *docs: dict) -> str:
    path.write_text(yaml.safe_dump({"tenants": list(docs)}, sort_keys=False))
    return str(path)


# -- ca_bundle --------------------------------------------------------------------------------


@pytest.fixture
def not_pem(tmp_path):
    path = tmp_path / "ca.der"
    path.write_bytes(b"\x30\x82\x03\x0c" + bytes(64))  # a DER header: binary, not PEM
    return path


def test_set_refuses_a_missing_or_non_pem_ca_bundle(cli, engine, tenant_slug, tmp_path, not_pem):
    registered(engine, tenant_slug)
    missing = tmp_path / "nowhere" / "ca.pem"
    for path, why in ((missing, "does not exist"), (not_pem, "holds no PEM certificate")):
        result = cli("tenant", "set", tenant_slug, f"ca_bundle={path}")
        assert result.exit_code == 2, result.output
        assert f"tenant {tenant_slug}: ca_bundle '{path}' {why}" in result.output
    assert stored_version(engine, tenant_slug) == 1


def test_import_refuses_a_non_pem_ca_bundle_and_writes_nothing(
    cli, engine, tenant_slug, tmp_path, not_pem, fake_graph
):
    good = {"slug": f"{tenant_slug}-ok", **BASE, "ca_bundle": str(fake_graph.ca_path)}
    bad = {"slug": tenant_slug, **BASE, "ca_bundle": str(not_pem)}
    result = cli("tenant", "import", write_yaml(tmp_path / "t.yaml", good, bad), "--no-graph-check")
    assert result.exit_code == 2
    assert f"tenant {tenant_slug}: ca_bundle '{not_pem}' holds no PEM certificate" in result.output
    assert (
        stored_version(engine, good["slug"]) is None and stored_version(engine, tenant_slug) is None
    )


def test_wizard_asks_again_for_a_ca_bundle_that_is_not_pem(
    cli, fake_graph, fake_tenant, engine, tenant_slug, tmp_path, not_pem
):
    from sync_pipeline_tests.support.fakegraph import FAKE_SECRET_ENV

    answers = [
        "application",
        fake_tenant["tenant_id"],
        fake_tenant["client_id"],
        FAKE_SECRET_ENV,
        "custom",
        fake_graph.base_url,
        fake_graph.base_url,
        str(tmp_path / "missing.pem"),  # asked again
        str(not_pem),  # asked again
        str(fake_graph.ca_path),
    ]  # then the input ends: the wizard stops before saving anything
    result = cli("tenant", "setup", tenant_slug, input="\n".join(answers) + "\n")
    out = " ".join(result.output.split())  # the wizard's console wraps long lines
    # and folds a path longer than a line (pytest-xdist's tmp paths are) inside it
    bare = "".join(out.split())
    assert f"ca_bundle'{tmp_path / 'missing.pem'}'doesnotexist" in bare
    assert f"ca_bundle'{not_pem}'holdsnoPEMcertificate" in bare
    assert out.count("try again") == 2
    assert "Connected:" in out  # the valid bundle was taken and Graph read through it
    assert stored_version(engine, tenant_slug) is None


# -- YAML and file encodings ------------------------------------------------------------------


def test_duplicate_yaml_keys_are_refused_naming_key_and_lines(cli, engine, tenant_slug, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "tenants:\n"
        f"  - slug: {tenant_slug}\n"
        f"    tenant_id: {ZERO}\n"
        f"    client_id: {ZERO}\n"
        "    client_secret_env: SP_INPUTS_SECRET\n"
        "    timezone: Europe/London\n"
        "    email_method: mail\n"
        "    timezone: America/New_York\n"
    )
    result = cli("tenant", "import", str(path), "--no-graph-check")
    assert result.exit_code == 2
    assert f"{path}: line 8: key 'timezone' is given twice in one mapping (first on line 6)" in (
        result.output
    )
    assert stored_version(engine, tenant_slug) is None
    registered(engine, tenant_slug)  # `tenant set` reads a YAML mapping with the same loader
    dup = cli(
        "tenant", "set", tenant_slug, "group_mapping_enabled=true", "group_mapping={a: X, a: Y}"
    )
    assert dup.exit_code == 2 and "key 'a' is given twice" in dup.output
    assert stored_version(engine, tenant_slug) == 1


def test_unquoted_time_in_yaml_is_a_time_not_minutes(cli, engine, tenant_slug, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        f"tenants:\n- slug: {tenant_slug}\n  tenant_id: {ZERO}\n  client_id: {ZERO}\n"
        "  client_secret_env: SP_INPUTS_SECRET\n  sync_time: 19:00\n"
    )
    assert cli("tenant", "import", str(path), "--no-graph-check").exit_code == 0
    with engine.connect() as conn:
        assert f"{tenants.get(conn, tenant_slug).settings.sync_time:%H:%M}" == "19:00"


def test_non_utf8_files_are_refused_with_the_byte_and_line(cli, engine, tenant_slug, tmp_path):
    path = tmp_path / "latin1.yaml"
    text = (
        f"tenants:\n- slug: {tenant_slug}\n  tenant_id: {ZERO}\n  client_id: {ZERO}\n"
        "  client_secret_env: SP_INPUTS_SECRET\n  display_name: Société Générale\n"
    )
    path.write_bytes(text.encode("latin-1"))
    result = cli("tenant", "import", str(path), "--no-graph-check")
    assert result.exit_code == 2
    assert f"{path}: not UTF-8 text (byte 0xe9 on line 6)" in result.output
    assert stored_version(engine, tenant_slug) is None

    registered(engine, tenant_slug)
    csv_file = tmp_path / "deny.csv"
    csv_file.write_bytes("email,name\nceo@acme.com,José\n".encode("cp1252"))
    result = cli("tenant", "set", tenant_slug, "--deny-list-csv", str(csv_file))
    assert result.exit_code == 2
    assert f"tenant {tenant_slug}: email_deny_list: {csv_file}: not UTF-8 text" in result.output
    assert "line 2" in result.output and stored_version(engine, tenant_slug) == 1


# -- DATABASE_URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://admin:hunter2@db.example/prod", ["'mysql://admin:***@db.example/prod'", "mysql"]),
        ("sqlite:///tmp/x.db", ["sqlite URL", "PostgreSQL"]),
        ("db.example:5432/prod", ["'db.example:5432/prod' is not a database URL"]),
        ("postgresql://u:hunter2@h:port/db", ["is not a database URL", "u:***@h"]),
    ],
)
def test_database_url_that_is_not_postgres_is_refused(cli, url, words):
    result = cli("tenant", "list", env={"DATABASE_URL": url})
    assert result.exit_code == 2, result.output
    assert "DATABASE_URL" in result.output and "to use the embedded server" in result.output
    for word in words:
        assert word in result.output
    assert "hunter2" not in result.output  # never the password


# -- tenant remove, an unset secret, quotes ---------------------------------------------------


def test_remove_of_an_unknown_tenant_exits_2_before_asking(cli, engine, tenant_slug):
    registered(engine, tenant_slug)
    result = cli("tenant", "remove", "no-such-tenant")
    assert result.exit_code == 2
    assert "no tenant 'no-such-tenant' is registered (known:" in result.output
    assert tenant_slug in result.output and "Stop syncing" not in result.output
    asked = cli("tenant", "remove", tenant_slug, input="n\n")
    assert asked.exit_code == 1 and "Stop syncing" in asked.output
    assert stored_version(engine, tenant_slug) == 1
    assert cli("tenant", "remove", tenant_slug, "--yes").exit_code == 0
    assert stored_version(engine, tenant_slug) is None


def test_import_warns_when_the_secret_variable_is_unset_here(cli, engine, tenant_slug, tmp_path):
    doc = {"slug": tenant_slug, **BASE, "client_secret_env": "SP_INPUTS_UNSET_SECRET"}
    result = cli("tenant", "import", write_yaml(tmp_path / "t.yaml", doc), "--no-graph-check")
    assert result.exit_code == 0, result.output
    assert (
        f"warning: tenant {tenant_slug}: client_secret_env SP_INPUTS_UNSET_SECRET is not set in "
        "this environment"
    ) in result.output
    assert "the UI, the daemon and the run workers" in result.output
    assert stored_version(engine, tenant_slug) == 1  # saved: the warning does not refuse
    quiet = cli("tenant", "import", write_yaml(tmp_path / "u.yaml", {**doc, **BASE}))
    assert quiet.exit_code == 0 and "warning" not in quiet.output


def test_error_messages_keep_their_quotes(cli, engine, tenant_slug):
    registered(engine, tenant_slug)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO app.groups (tenant, name, source) VALUES (:t, 'Staff', 'app')"),
            {"t": tenant_slug},
        )
    result = cli(
        "tenant", "set", tenant_slug, "group_mapping_enabled=true", "group_mapping=g1=Nope"
    )
    assert result.exit_code == 2
    assert result.output.rstrip().endswith("map onto one of: 'Staff'")  # the closing quote too


# -- every setting's error in the project's words ----------------------------------------------

BAD_VALUES = {
    "slug": ("Bad Slug", "must be lower-case letters, digits and dashes"),
    "display_name": (5, "must be text"),
    "auth_mode": ("app", "is not one of: application, delegated"),
    "tenant_id": ("nope", "is not a GUID"),
    "client_id": (12, "must be text"),
    "client_secret_env": ("my secret!", "must be the NAME of an environment variable"),
    "client_secret_expires_at": ("next week", "is not a date; use YYYY-MM-DD"),
    "client_certificate_path": (["a"], "must be text"),
    "client_certificate_thumbprint": (5, "must be text"),
    "graph_base_url": ("http://graph.example", "must be an https:// host without a path"),
    "authority_host": ("https://login.example/x", "must be an https:// host without a path"),
    "ca_bundle": ("/nowhere/ca.pem", "does not exist on this machine"),
    "fake_tenant": (5, "must be text"),
    "auto_sync": ("maybe", "is not true or false"),
    "sync_time": ("7pm", "is not a time of day; use HH:MM"),
    "sync_interval": (3, "must be off or a whole number of minutes from 5 to 1440"),
    "full_read_every_days": (0, "must be between 1 and 90"),
    "timezone": ("Mars/Olympus", "is not a known IANA time zone"),
    "email_method": ("smtp", "is not one of: upn, mail, mail_then_upn"),
    "include_groups": ("sometimes", "is not true or false"),
    "user_scope": ("everyone", "is not one of: all, selected_groups"),
    "scope_group_ids": ("g1", "must be a list"),
    "group_mapping_enabled": ("perhaps", "is not true or false"),
    "group_types": (["distribution"], "entry 'distribution' is not one of: microsoft365, security"),
    "group_ids": (["g1", " "], "holds an empty group id"),
    "group_mapping": (["g1"], "must be a mapping"),
    "exclude_unlicensed": ("x", "is not true or false"),
    "exclude_mailbox_types": (
        ["mailbox"],
        "entry 'mailbox' is not one of: user, linked, shared, room, equipment, others",
    ),
    "import_managers": ("x", "is not true or false"),
    "email_deny_list": (["nobody"], "entry 'nobody' is neither an address nor a *@domain"),
    "include_disabled": ("x", "is not true or false"),
    "include_guests": ("x", "is not true or false"),
    "admin_email": ("nobody", "is not an email address"),
    "max_deactivation_percent": (150, "must be between 0 and 100"),
    "max_deactivations": (-1, "must be at least 0"),
    "allow_mass_deactivation_from_ui": ("sometimes", "is not true or false"),
    "drift_warn_percent": ("abc", "is not a number"),
    "drift_error_percent": (101, "must be between 0 and 100"),
    "count_tolerance_objects": (1.5, "is not a whole number"),
    "count_tolerance_percent": (11, "must be between 0 and 10"),
    "full_verification_days": (0, "must be between 1 and 90"),
    "deactivation_grace_reads": (0, "must be between 1 and 100"),
    "deactivation_grace_hours": (-2, "must be between 0 and 2160"),
    "deleted_skip_grace": ("soon", "is not true or false"),
    "protected_users": (["boss"], "entry 'boss' is neither an email address nor a Graph user id"),
    "max_group_removal_percent": (300, "must be between 0 and 100"),
    "group_removal_min_members": (0, "must be at least 1"),
    "stale_after_hours": (0, "must be between 1 and 2160"),
    "change_notifications": ("often", "is not true or false"),
    "notification_url": ("http://notify.example.com/graph", "must be an https:// URL"),
    "notification_debounce_seconds": (-5, "must be between 0 and 3600"),
    "webhook_url": ("http://app.example.com/hooks", "must be an https:// URL"),
    "webhook_secret_env": ("s3cr3t value!", "must be the NAME of an environment variable"),
    "webhook_ca_bundle": ("/nowhere/webhook-ca.pem", "does not exist on this machine"),
    "event_retention_days": (0, "must be between 1 and 3650"),
}


def test_every_setting_has_a_bad_value_below():
    assert set(BAD_VALUES) == set(TenantSettings.model_fields)


@pytest.mark.parametrize("field", sorted(BAD_VALUES))
def test_every_settings_error_names_tenant_field_and_value(
    cli, engine, tenant_slug, tmp_path, field
):
    value, phrase = BAD_VALUES[field]
    doc = {"slug": tenant_slug, **BASE, field: value}
    slug = value if field == "slug" else tenant_slug
    result = cli("tenant", "import", write_yaml(tmp_path / "t.yaml", doc), "--no-graph-check")
    assert result.exit_code == 2, result.output
    assert f"tenant {slug}: {field} " in result.output
    assert repr(value).strip("[]") in result.output or field == "group_ids"
    assert phrase in result.output
    assert not any(word in result.output for word in PYDANTIC_WORDS), result.output
    assert stored_version(engine, tenant_slug) is None


# -- hostile values (issue 19): whole-value patterns, parsed URLs, no secret echoed ----------


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        # Python's `$` matched before a final newline: "contoso2\n" registered as a slug
        ("slug", "contoso2\n", "must be lower-case letters, digits and dashes"),
        ("client_secret_env", "SP_SECRET\n", "must be the NAME of an environment variable"),
        # the host a token goes to is evil.example, not 127.0.0.1
        ("graph_base_url", "https://127.0.0.1:1@evil.example", "must not carry a user name"),
        ("authority_host", "https://login.example?x=1", "must not have a query"),
        ("graph_base_url", "https://graph.example:99999", "is not a URL"),
        ("notification_url", "https://me:pw@notify.example/hook", "must not carry a user name"),
        ("notification_url", "https://notify.example/hook#x", "must not have a query"),
    ],
)
def test_patterns_match_whole_values_and_urls_are_parsed(
    cli, engine, tenant_slug, tmp_path, field, value, phrase
):
    slug = value if field == "slug" else tenant_slug
    doc = {"slug": slug, **BASE, field: value}
    result = cli("tenant", "import", write_yaml(tmp_path / "t.yaml", doc), "--no-graph-check")
    assert result.exit_code == 2, result.output
    assert phrase in result.output and repr(value) in result.output
    assert stored_version(engine, tenant_slug) is None


def test_a_secret_typed_as_the_variable_name_is_not_echoed(cli, engine, tenant_slug, tmp_path):
    secret = "Xy8Q~aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789ab"
    doc = {"slug": tenant_slug, **BASE, "client_secret_env": secret}
    result = cli("tenant", "import", write_yaml(tmp_path / "t.yaml", doc), "--no-graph-check")
    assert result.exit_code == 2
    assert "client_secret_env (a value shaped like a secret: not shown)" in result.output
    assert "must be the NAME of an environment variable" in result.output
    assert secret not in result.output and secret[:12] not in result.output
    registered(engine, tenant_slug)
    typed = cli("tenant", "set", tenant_slug, f"client_secret_env={secret}")
    assert typed.exit_code == 2 and secret not in typed.output


def test_yaml_aliases_are_refused_but_merge_keys_work(cli, engine, tenant_slug, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    levels += [
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    bomb.write_text(
        "tenants:\n"
        f"  - slug: {tenant_slug}\n"
        f"    tenant_id: {ZERO}\n"
        f"    client_id: {ZERO}\n"
        "    client_secret_env: SP_INPUTS_SECRET\n"
        "    data:\n" + "".join(f"      {line}\n" for line in levels)
    )
    result = cli("tenant", "import", str(bomb), "--no-graph-check")
    assert result.exit_code == 2, result.output
    assert "an alias (*name) is only accepted after a merge key" in result.output
    assert stored_version(engine, tenant_slug) is None
    merged = tmp_path / "merged.yaml"
    merged.write_text(
        "common: &common\n"
        f"  tenant_id: {ZERO}\n"
        f"  client_id: {ZERO}\n"
        "  client_secret_env: SP_INPUTS_SECRET\n"
        "tenants:\n"
        f"  - slug: {tenant_slug}\n"
        "    <<: *common\n"
        "    timezone: Europe/London\n"
    )
    ok = cli("tenant", "import", str(merged), "--no-graph-check", "--yes")
    assert ok.exit_code == 0, ok.output
    assert stored_version(engine, tenant_slug) == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "ui.example.com", "::"])
def test_the_ui_listens_on_loopback_unless_told_otherwise(cli, host):
    """The Dagster UI has no authentication of its own: a non-loopback --host is refused
    (exit 2, nothing started) unless --allow-remote says it is meant."""
    result = cli("ui", "--host", host)
    assert result.exit_code == 2, result.output
    assert "is not a loopback address" in result.output and "--allow-remote" in result.output


def test_mass_deactivation_from_the_ui_is_refused_unless_the_tenant_allows_it():
    """allow_mass_deactivation in the run config lifts the safety limit only for a run the
    CLI executes in its own process, or where the tenant allows it from the UI (the UI and
    its GraphQL API authenticate nobody)."""
    from sync_pipeline.load import runmode

    asked = {"ops": {"app_directory": {"config": {"allow_mass_deactivation": True}}}}
    ui = {"launched_in_process": False, "allowed_from_ui": False}
    refusal = runmode.mass_deactivation_refusal(asked, **ui)
    assert refusal is not None and "allow_mass_deactivation_from_ui" in refusal
    assert "sync-pipeline sync TENANT --allow-mass-deactivation" in refusal
    assert runmode.mass_deactivation_refusal(asked, **(ui | {"allowed_from_ui": True})) is None
    cli = {"launched_in_process": True, "allowed_from_ui": False}
    assert runmode.mass_deactivation_refusal(asked, **cli) is None
    assert runmode.mass_deactivation_refusal({}, **ui) is None  # not asked: nothing to refuse


def test_outside_text_is_inert_in_email_headers_and_metadata_cells():
    """A name from Graph in an email subject or a Dagster markdown cell: no line break (an
    injected header, or a crash: the email package refuses one), no escape sequence, no bidi
    override; Unicode kept."""
    from sync_pipeline.core.textfiles import markdown_cell
    from sync_pipeline.report import mail

    hostile = "Åsa\r\nBcc: all@example.com \x1b[31mred\u202e|x"
    msg = mail.build(to="it@example.com", subject=f"held: {hostile}", text="body")
    subject = str(msg["Subject"])
    assert "\r" not in subject and "\n" not in subject and "Bcc" not in msg.keys()
    assert "Åsa" in subject and "\x1b" not in subject and "\u202e" not in subject
    cell = markdown_cell(hostile)
    assert "\n" not in cell and "\x1b" not in cell and "\\|x" in cell and "Åsa" in cell
