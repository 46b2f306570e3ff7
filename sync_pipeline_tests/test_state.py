"""Where state lives, which database gets the demo, and how migrations treat their files:
the real command in a subprocess, against real Postgres (fresh databases, the embedded server).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline_tests.support.cli import run_cli

CHECKOUT = Path(__file__).resolve().parents[1]


def demo_rows(url: str) -> list[dict]:
    with db.engine(url).connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    "SELECT slug, settings FROM sync.tenant_settings WHERE slug = 'contoso-demo'"
                    " UNION ALL SELECT slug, settings FROM sync.tenant_settings_history"
                    " WHERE slug = 'contoso-demo'"
                )
            )
        ]


# -- point 1: the demo never reaches a DATABASE_URL server unasked ------------------------------


def test_no_demo_tenant_on_a_database_url_server(fresh_database, tmp_path):
    env = {"DATABASE_URL": fresh_database, "SYNC_PIPELINE_HOME": str(tmp_path / "home")}
    tenants_file = tmp_path / "t.yaml"
    tenants_file.write_text(
        "tenants:\n"
        "- slug: prod-one\n"
        "  tenant_id: 00000000-0000-0000-0000-0000000000a1\n"
        "  client_id: 00000000-0000-0000-0000-0000000000a2\n"
        "  client_secret_env: PROD_ONE_SECRET\n"
    )
    imported = run_cli("tenant", "import", str(tenants_file), "--no-graph-check", env=env)
    assert imported.returncode == 0, imported.stderr
    listing = run_cli("tenant", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "prod-one" in listing.stdout and "contoso-demo" not in listing.stdout
    assert demo_rows(fresh_database) == []

    # Asked for by name, it is still refused without the explicit flag: this may be production.
    refused = run_cli("demo", env=env)
    assert refused.returncode == 2
    assert "DATABASE_URL is set" in refused.stderr and "--allow-database-url" in refused.stderr
    assert "300 generated users" in refused.stderr
    assert demo_rows(fresh_database) == []

    registered = run_cli("demo", "--allow-database-url", env=env)
    assert registered.returncode == 0, registered.stderr
    assert "no daily schedule" in registered.stdout
    (row,) = demo_rows(fresh_database)
    assert row["settings"]["auto_sync"] is False and row["settings"]["fake_tenant"]
    listing = run_cli("tenant", "list", env=env)
    demo_line = next(line for line in listing.stdout.splitlines() if "contoso-demo" in line)
    assert " off " in demo_line

    scheduled = run_cli("demo", "--allow-database-url", "--auto-sync", env=env)
    assert scheduled.returncode == 0, scheduled.stderr
    assert "updated" in scheduled.stdout and "daily at" in scheduled.stdout
    with db.engine(fresh_database).connect() as conn:
        doc = conn.execute(
            sa.text("SELECT settings FROM sync.tenant_settings WHERE slug = 'contoso-demo'")
        ).scalar_one()
    assert "auto_sync" not in doc  # true is the default, so the document leaves it out


# -- point 6 (and the quick start): state in the user's data directory, from any folder -------


def test_quick_start_on_a_fresh_machine_keeps_state_out_of_the_current_folder(tmp_path):
    """No DATABASE_URL, no SYNC_PIPELINE_HOME: the README's first command, from two folders."""
    data_home = tmp_path / "xdg-data"  # platformdirs' user data directory on Linux
    state = data_home / "sync-pipeline"
    first_dir, second_dir = tmp_path / "checkout", tmp_path / "elsewhere"
    first_dir.mkdir()
    second_dir.mkdir()
    env = {"XDG_DATA_HOME": str(data_home)}
    drop = ("DATABASE_URL", "SYNC_PIPELINE_HOME", "DAGSTER_HOME", "SYNC_PIPELINE_DAGSTER_PG_URL")
    try:
        synced = run_cli("sync", "contoso-demo", env=env, cwd=first_dir, drop=drop)
        assert synced.returncode == 0, synced.stderr + synced.stdout
        assert "created" in synced.stdout
        # said once, where the state went
        assert f"state (embedded Postgres, Dagster home) lives in {state}" in synced.stderr
        assert (state / "pgdata" / "PG_VERSION").is_file()

        listing = run_cli("tenant", "list", env=env, cwd=second_dir, drop=drop)
        assert listing.returncode == 0, listing.stderr
        demo_line = next(line for line in listing.stdout.splitlines() if "contoso-demo" in line)
        assert "success" in demo_line  # the same database, not a second empty one
        assert " off " in demo_line  # the demo's daily schedule is off unless asked for
        assert "lives in" not in listing.stderr  # said only by the command that created it
        assert not (first_dir / ".sync_pipeline").exists()
        assert not (second_dir / ".sync_pipeline").exists()
        assert list(first_dir.iterdir()) == [] and list(second_dir.iterdir()) == []
    finally:
        run_cli("db", "stop", env=env, cwd=second_dir, drop=drop)


def test_an_older_state_folder_in_the_current_folder_is_pointed_out(tmp_path, database_url):
    old = tmp_path / "repo" / ".sync_pipeline"
    (old / "pgdata").mkdir(parents=True)
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg-data"), "DATABASE_URL": database_url}
    result = run_cli("tenant", "list", env=env, cwd=tmp_path / "repo", drop=("SYNC_PIPELINE_HOME",))
    assert result.returncode == 0, result.stderr
    assert f"export SYNC_PIPELINE_HOME={old}" in result.stderr


# -- point 10: migrations as operators expect --------------------------------------------------


def copy_checkout(dest: Path, *, with_sql: bool = True) -> Path:
    """The package as installed elsewhere: a copy of sync_pipeline/ and dagster.yaml, with
    or without the sql/ folder (a non-editable install has none)."""
    ignore = shutil.ignore_patterns("__pycache__")
    # symlinks kept: sync_pipeline/sql and sync_pipeline/dagster.yaml then reach the copy's own
    shutil.copytree(
        CHECKOUT / "sync_pipeline", dest / "sync_pipeline", ignore=ignore, symlinks=True
    )
    shutil.copy(CHECKOUT / "dagster.yaml", dest / "dagster.yaml")
    if with_sql:
        shutil.copytree(CHECKOUT / "sql", dest / "sql", ignore=ignore)
    else:
        (dest / "sql" / "migrations").mkdir(parents=True)
    return dest


def checksums(url: str) -> dict[str, str]:
    with db.engine(url).connect() as conn:
        return dict(
            conn.execute(sa.text("SELECT filename, checksum FROM sync.schema_migrations")).all()
        )


def test_a_changed_applied_migration_is_refused_naming_the_file(fresh_database, tmp_path):
    db.upgrade(db.engine(fresh_database))
    before = checksums(fresh_database)
    copy = copy_checkout(tmp_path / "copy")
    edited = copy / "sql" / "migrations" / "004_app.sql"
    edited.write_text(edited.read_text() + "\nCOMMENT ON SCHEMA app IS 'edited after apply';\n")
    env = {
        "PYTHONPATH": str(copy),
        "DATABASE_URL": fresh_database,
        "SYNC_PIPELINE_HOME": str(tmp_path / "home"),
    }
    refused = run_cli("tenant", "list", env=env, cwd=copy)
    assert refused.returncode == 1, refused.stderr
    assert "migration 004_app.sql was applied" in refused.stderr
    assert "sql/migrations/004_app.sql has changed" in refused.stderr
    assert "never re-applied silently" in refused.stderr
    assert "sync-pipeline db upgrade --reapply 004_app.sql" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert checksums(fresh_database) == before  # nothing re-applied, nothing recorded

    # the way out, on purpose
    reapplied = run_cli("db", "upgrade", "--reapply", "004_app.sql", env=env, cwd=copy)
    assert reapplied.returncode == 0, reapplied.stderr
    assert "applied 1 file(s): 004_app.sql" in reapplied.stdout
    assert checksums(fresh_database)["004_app.sql"] != before["004_app.sql"]
    with db.engine(fresh_database).connect() as conn:
        comment = conn.execute(sa.text("SELECT obj_description('app'::regnamespace)")).scalar()
    assert comment == "edited after apply"
    assert run_cli("tenant", "list", env=env, cwd=copy).returncode == 0

    unknown = run_cli("db", "upgrade", "--reapply", "999_nope.sql", env=env, cwd=copy)
    assert unknown.returncode == 1 and "999_nope.sql: no such migration file" in unknown.stderr


def test_no_migration_files_is_an_error_not_a_no_op(fresh_database, tmp_path):
    copy = copy_checkout(tmp_path / "copy", with_sql=False)
    env = {
        "PYTHONPATH": str(copy),
        "DATABASE_URL": fresh_database,
        "SYNC_PIPELINE_HOME": str(tmp_path / "home"),
    }
    for args in (["tenant", "list"], ["db", "upgrade"]):
        result = run_cli(*args, env=env, cwd=copy)
        assert result.returncode == 1, result.stdout
        assert f"no migration files in {copy / 'sql' / 'migrations'}" in result.stderr
        assert "pip install -e ." in result.stderr
    with db.engine(fresh_database).connect() as conn:
        table = conn.execute(sa.text("SELECT to_regclass('sync.schema_migrations')")).scalar()
    assert table is None
