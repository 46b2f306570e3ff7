"""The `sync-pipeline` command as users run it: a real process, real exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline_tests.support.cli import run_cli

COMMANDS = [
    [],
    ["sync"],
    ["ui"],
    ["db"],
    ["db", "upgrade"],
    ["db", "status"],
    ["db", "stop"],
    ["demo"],
    ["tenant"],
    ["tenant", "import"],
    ["tenant", "export"],
    ["tenant", "list"],
    ["tenant", "show"],
    ["tenant", "remove"],
    ["tenant", "add"],
    ["tenant", "set"],
    ["tenant", "setup"],
    ["explain"],
    ["history"],
    ["report"],
    ["undo"],
    ["tenant", "connect"],
    ["fakegraph"],
    ["fakegraph", "serve"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "main")
def test_every_command_has_help(args):
    result = run_cli(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> dict[str, str]:
    """A fresh SYNC_PIPELINE_HOME on the test database, as a new user's machine would have."""
    return {"SYNC_PIPELINE_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}


def test_demo_sync_from_the_cli_then_nothing_to_change(home, engine):
    # On a DATABASE_URL server the demo is registered only on purpose (test_state.py).
    registered = run_cli("demo", "--allow-database-url", env=home)
    assert registered.returncode == 0, registered.stderr
    first = run_cli("sync", "contoso-demo", env=home)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "created" in first.stdout
    with engine.connect() as conn:
        active = conn.execute(
            sa.text("SELECT count(*) FROM app.users WHERE tenant = 'contoso-demo' AND is_active")
        ).scalar()
    assert active > 100
    # a first sync: every active user is a new seat
    assert f"seats: +{active:,} / \N{MINUS SIGN}0 active, {active:,} after this sync" in (
        first.stdout
    )
    second = run_cli("sync", "contoso-demo", env=home)
    assert second.returncode == 0, second.stderr
    assert "users: 0 created, 0 updated, 0 deactivated" in second.stdout
    assert f"seats: +0 / \N{MINUS SIGN}0 active, {active:,} after this sync" in second.stdout
    listing = run_cli("tenant", "list", env=home)
    assert "contoso-demo" in listing.stdout and "success" in listing.stdout


def test_bad_settings_file_names_tenant_field_and_value_and_writes_nothing(home, tmp_path, engine):
    bad = tmp_path / "tenants.yaml"
    bad.write_text(
        "tenants:\n"
        "  - slug: good-one\n"
        "    tenant_id: 00000000-0000-0000-0000-000000000001\n"
        "    client_id: 00000000-0000-0000-0000-000000000002\n"
        "    client_secret_env: GOOD_SECRET\n"
        "  - slug: bad-one\n"
        "    tenant_id: 00000000-0000-0000-0000-000000000003\n"
        "    client_id: 00000000-0000-0000-0000-000000000004\n"
        "    client_secret_env: BAD_SECRET\n"
        "    timezone: Mars/Olympus\n"
    )
    result = run_cli("tenant", "import", str(bad), env=home)
    assert result.returncode == 2
    assert "bad-one" in result.stderr and "timezone" in result.stderr
    assert "Mars/Olympus" in result.stderr
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM sync.tenant_settings WHERE slug = 'good-one'")
        ).scalar()
    assert stored == 0


def test_import_export_round_trip(home, tmp_path):
    source = tmp_path / "in.yaml"
    source.write_text(
        "tenants:\n"
        "- slug: roundtrip\n"
        "  tenant_id: 00000000-0000-0000-0000-0000000000aa\n"
        "  client_id: 00000000-0000-0000-0000-0000000000bb\n"
        "  client_secret_env: ROUNDTRIP_SECRET\n"
        "  email_method: mail_then_upn\n"
        "  exclude_unlicensed: true\n"
        "  email_deny_list:\n"
        "  - ceo@contoso.com\n"
        "  - '*@contractors.contoso.com'\n"
    )
    assert run_cli("tenant", "import", str(source), env=home).returncode == 0
    out = run_cli("tenant", "export", "roundtrip", env=home)
    assert out.returncode == 0, out.stderr
    assert out.stdout == source.read_text()


def test_unknown_tenant_exits_2_and_says_what_to_do(home):
    result = run_cli("sync", "no-such-tenant", env=home)
    assert result.returncode == 2
    assert "no-such-tenant" in result.stderr and "tenant import" in result.stderr


def test_mass_deactivation_is_refused_with_exit_3_then_allowed(
    home, register, tenant_slug, fake_tenant, engine
):
    register(tenant_slug)
    assert run_cli("sync", tenant_slug, env=home).returncode == 0
    # Scoping the sync to an empty group would deactivate every user.
    empty = next(gid for gid, members in fake_tenant["members"].items() if not members)
    register(tenant_slug, user_scope="selected_groups", scope_group_ids=[empty])
    refused = run_cli("sync", tenant_slug, env=home)
    assert refused.returncode == 3, refused.stderr
    assert "--allow-mass-deactivation" in refused.stderr
    with engine.connect() as conn:
        active = conn.execute(
            sa.text("SELECT count(*) FROM app.users WHERE tenant = :t AND is_active"),
            {"t": tenant_slug},
        ).scalar()
    assert active > 100  # nothing was deactivated
    allowed = run_cli("sync", tenant_slug, "--allow-mass-deactivation", env=home)
    assert allowed.returncode == 0, allowed.stderr
    assert f"0 created, 0 updated, {active} deactivated" in allowed.stdout
