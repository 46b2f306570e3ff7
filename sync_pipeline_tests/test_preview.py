"""The impact preview of a settings change (issue 16, point 5) and the seats sentence (point 6):
what the next sync would do, computed on the latest staging rows and written nowhere, then
asked about before `tenant set` / `tenant import` save the change."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.core import db, settings
from sync_pipeline.load import preview
from sync_pipeline.load.seats import Seats
from sync_pipeline.registry import tenants
from sync_pipeline_tests.support.database import app_snapshot
from sync_pipeline_tests.support.pipeline import materialise

MINUS = "\N{MINUS SIGN}"


def unlicensed_members(doc: dict) -> set[str]:
    """Independently of the SQL: the enabled members without a licence (default settings
    import them, exclude_unlicensed leaves them out), by lower-cased UPN."""
    return {
        u["userPrincipalName"].lower()
        for u in doc["users"]
        if not u["assignedLicenses"] and u["accountEnabled"] and u["userType"] == "Member"
    }


def every_row(engine: sa.Engine, tenant: str) -> dict[str, list[str]]:
    """Every row of the tenant in every table of staging, sync and app, as text; and the row
    count of the tables without a tenant column: what "nothing was written" compares."""
    out: dict[str, list[str]] = {}
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT t.table_schema || '.' || t.table_name AS name, EXISTS ("
                "  SELECT 1 FROM information_schema.columns c WHERE c.table_schema = "
                "  t.table_schema AND c.table_name = t.table_name AND c.column_name = 'tenant'"
                ") AS keyed FROM information_schema.tables t WHERE t.table_schema IN "
                "('staging', 'sync', 'app') AND t.table_type = 'BASE TABLE' ORDER BY 1"
            )
        ).all()
        for name, keyed in tables:  # names from the catalog
            if keyed:
                rows = conn.execute(
                    sa.text(f"SELECT x::text FROM {name} x WHERE x.tenant = :t ORDER BY 1"),
                    {"t": tenant},
                ).scalars()
                out[name] = list(rows)
            else:
                out[name] = [str(conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar())]
    return out


def version(engine: sa.Engine, slug: str) -> int:
    with engine.connect() as conn:
        return tenants.get(conn, slug).version


@pytest.fixture
def synced(register, tenant_slug, engine):
    """A tenant served by the fake Graph, synced once with the default settings."""
    register(tenant_slug, admin_email="admin@fabrikam.test")
    with dg.instance_for_test() as instance:
        assert materialise(instance, tenant_slug, job="sync", tags={"trigger": "test"}).success
    return tenant_slug


def test_seats_sentence():
    seats = Seats(before=94_900, joined=251, left=204)
    assert (seats.delta, seats.after) == (47, 94_947)
    assert seats.sentence() == f"+251 / {MINUS}204 active, 94,947 after this sync"
    assert seats.metadata() == {"active_users_after": 94_947, "active_users_delta": 47}


def test_preview_predicts_the_test_sync_and_writes_nothing(synced, engine, fake_tenant):
    with engine.connect() as conn:
        current = tenants.get(conn, synced).settings
    candidate = settings.assign(current, {"exclude_unlicensed": "true"})
    assert preview.scope_changes(current, candidate) == ["exclude_unlicensed"]
    before = every_row(engine, synced)

    impact = preview.compute(engine, candidate, shown=500)

    assert every_row(engine, synced) == before  # not a row anywhere, the run's neither
    unlicensed = unlicensed_members(fake_tenant)
    leavers = {p.email.lower() for p in impact.leavers}
    assert leavers and leavers <= unlicensed
    assert impact.leavers_total == len(impact.leavers)
    assert {p.reason for p in impact.leavers} == {"unlicensed"}
    assert impact.joiners_total == 0 and not impact.joiners
    with engine.connect() as conn:
        active = conn.execute(db.q("load/active_users"), {"tenant": synced}).scalar_one()
    assert impact.seats == Seats(before=active, joined=0, left=impact.leavers_total)

    # The test sync with those settings, saved, plans exactly the previewed changes.
    with engine.begin() as conn:
        tenants.save(conn, candidate)
    with dg.instance_for_test() as instance:
        result = materialise(instance, synced, job="test_sync", tags={"trigger": "test"})
    assert result.success
    diff_meta = result.asset_materializations_for_node("sync_diff")[0].metadata
    for key, value in impact.counts.items():
        assert diff_meta[key].value == value, key
    assert diff_meta["active_users_after"].value == active - impact.leavers_total
    assert diff_meta["active_users_delta"].value == -impact.leavers_total
    report = result.asset_materializations_for_node("test_sync_report")[0].metadata["report"]
    sentence = f"+0 / {MINUS}{impact.leavers_total} active, {active - impact.leavers_total:,}"
    assert f"Seats: {sentence} after this sync." in report.value


def test_never_synced_tenant_has_no_preview(register, tenant_slug, engine):
    new = register(tenant_slug)
    with pytest.raises(preview.NeverSynced, match=f"tenant {tenant_slug}: no preview"):
        preview.compute(engine, new.model_copy(update={"exclude_unlicensed": True}))


def test_preview_waits_for_a_running_sync_only_briefly(synced, engine, monkeypatch):
    monkeypatch.setattr(preview, "LOCK_WAIT", "200ms")
    with engine.connect() as conn:
        candidate = tenants.get(conn, synced).settings
    with engine.begin() as holder, db.tenant_lock(holder, synced):
        with pytest.raises(preview.PreviewUnavailable, match="is writing now"):
            preview.compute(engine, candidate)


def test_set_without_yes_off_a_terminal_prints_the_leavers_and_saves_nothing(
    synced, cli, engine, fake_tenant
):
    before = every_row(engine, synced)
    refused = cli("tenant", "set", synced, "exclude_unlicensed=true")
    assert refused.exit_code == 1, refused.output
    assert "leavers:" in refused.output and "(unlicensed)" in refused.output
    shown = [ln.split()[0].lower() for ln in refused.output.splitlines() if "(unlicensed)" in ln]
    assert shown and set(shown) <= unlicensed_members(fake_tenant)
    assert f"seats: +0 / {MINUS}" in refused.output
    assert "--yes" in refused.output and "nothing was written" in refused.output
    assert every_row(engine, synced) == before  # settings version, app.*, sync.runs, diffs
    assert version(engine, synced) == 1


def test_set_with_yes_shows_the_preview_and_saves(synced, cli, engine):
    app_before = app_snapshot(engine, synced)
    saved = cli("tenant", "set", synced, "exclude_unlicensed=true", "--yes")
    assert saved.exit_code == 0, saved.output
    assert "(unlicensed)" in saved.output and "version 2" in saved.output
    assert version(engine, synced) == 2
    assert app_snapshot(engine, synced) == app_before  # saved, not synced


def test_set_over_the_safety_limit_says_so_before_saving(synced, cli, engine, fake_tenant):
    empty = next(gid for gid, members in fake_tenant["members"].items() if not members)
    refused = cli("tenant", "set", synced, "user_scope=selected_groups", f"scope_group_ids={empty}")
    assert refused.exit_code == 1
    assert "over the safety limit" in refused.output
    assert "(out_of_scope, held for review)" in refused.output  # the gate holds them when due
    assert version(engine, synced) == 1


def test_set_of_a_never_synced_tenant_saves_without_preview(register, tenant_slug, cli, engine):
    register(tenant_slug)
    saved = cli("tenant", "set", tenant_slug, "exclude_unlicensed=true")
    assert saved.exit_code == 0, saved.output
    assert "never been synced" in saved.output and "saving without a preview" in saved.output
    assert version(engine, tenant_slug) == 2


def test_set_of_a_setting_outside_scope_asks_nothing(synced, cli, engine):
    saved = cli("tenant", "set", synced, "timezone=Europe/Paris")
    assert saved.exit_code == 0, saved.output
    assert "leavers" not in saved.output and version(engine, synced) == 2


def test_import_of_a_narrower_scope_asks_first(synced, cli, engine, tmp_path):
    with engine.connect() as conn:
        current = tenants.get(conn, synced).settings
    path = tmp_path / "tenants.yaml"
    path.write_text(settings.dump_yaml([current.model_copy(update={"exclude_unlicensed": True})]))
    refused = cli("tenant", "import", str(path))
    assert refused.exit_code == 1 and "(unlicensed)" in refused.output
    assert version(engine, synced) == 1
    saved = cli("tenant", "import", str(path), "--yes")
    assert saved.exit_code == 0, saved.output
    assert version(engine, synced) == 2


def answer_on_a_terminal(args: list[str], answer: str, env: dict[str, str]) -> tuple[int, str]:
    """`sync-pipeline ARGS` with a terminal as its stdin, answering `answer` to its question."""
    leader, follower = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "sync_pipeline.cli", *args],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
        )
        os.write(leader, f"{answer}\n".encode())
        out, _ = child.communicate(timeout=300)
    finally:
        os.close(leader)
        os.close(follower)
    return child.returncode, out


@pytest.mark.parametrize(("answer", "code", "saved"), [("n", 1, 1), ("y", 0, 2)])
def test_set_on_a_terminal_asks_and_takes_the_answer(
    synced, engine, database_url, tmp_path, answer, code, saved
):
    app_before = app_snapshot(engine, synced)
    env = {"SYNC_PIPELINE_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}
    returncode, out = answer_on_a_terminal(
        ["tenant", "set", synced, "exclude_unlicensed=true"], answer, env
    )
    assert returncode == code, out
    assert "(unlicensed)" in out and f"Save the change of {synced}?" in out
    assert version(engine, synced) == saved
    assert app_snapshot(engine, synced) == app_before


def test_wizard_previews_at_the_test_sync_step_and_no_goes_back(synced, cli, engine):
    answers = [
        "",  # keep sign-in
        "n",  # no automatic sync
        "",  # email method: keep upn
        "n",  # no groups: steps 6 to 8 are skipped
        "",  # scope: all
        "y",  # exclude unlicensed
        "",  # import managers: keep false
        "",  # deny list: none
        "",  # no admin address
        "n",  # the preview: do not save; back to the deny list
        "",  # deny list: none
        "",  # no admin address
        "y",  # the preview again: save
        "n",  # no test sync now
    ]
    result = cli("tenant", "setup", synced, input="\n".join(answers) + "\n")
    out = result.output
    assert result.exit_code == 0, out
    assert out.count("with the new include_groups, exclude_unlicensed") == 2
    assert "(unlicensed)" in out and f"Save the change of {synced}?" in out
    assert "Not saved." in out
    assert out.count("Step 11/13: deny list") == 2
    with engine.connect() as conn:
        t = tenants.get(conn, synced)
    assert t.version == 2
    assert (t.settings.exclude_unlicensed, t.settings.include_groups) == (True, False)


def emails(engine: sa.Engine, tenant: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT external_id, email FROM app.users WHERE tenant = :t AND is_active"),
            {"t": tenant},
        ).all()
    return dict(rows)


def test_address_changes_are_the_ones_the_sync_then_makes(synced, engine):
    with engine.connect() as conn:
        current = tenants.get(conn, synced).settings
    candidate = settings.assign(current, {"email_method": "mail_then_upn"})
    impact = preview.compute(engine, candidate)
    before = emails(engine, synced)
    with engine.begin() as conn:
        tenants.save(conn, candidate)
    with dg.instance_for_test() as instance:
        assert materialise(instance, synced, job="sync", tags={"trigger": "test"}).success
    after = emails(engine, synced)
    moved = [i for i in before.keys() & after.keys() if before[i] != after[i]]
    assert impact.address_changes == len(moved) > 0
    assert impact.leavers_total == len(before.keys() - after.keys())
    assert impact.seats.after == len(after)


def test_bad_value_is_refused_before_any_preview(synced, cli, engine):
    refused = cli("tenant", "set", synced, "exclude_unlicensed=maybe", "--yes")
    assert refused.exit_code == 2
    assert f"tenant {synced}" in refused.output and "exclude_unlicensed" in refused.output
    assert "maybe" in refused.output and "leavers" not in refused.output
    assert version(engine, synced) == 1
