"""The test sync (the wizard's step 12): a dry run whose report reaches the admin by email."""

import csv
import io
import zipfile

import dagster as dg
import sqlalchemy as sa

from sync_pipeline_tests.support.pipeline import materialise

APP_TABLES = ("app.users", "app.groups", "app.group_members")


def app_rows(engine: sa.Engine, tenant: str) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            table: [
                tuple(r)
                for r in conn.execute(
                    sa.text(f"SELECT * FROM {table} WHERE tenant = :t ORDER BY 1, 2, 3"),
                    {"t": tenant},
                )
            ]
            for table in APP_TABLES
        }


def run(job: str, tenant: str):
    with dg.instance_for_test() as instance:
        return materialise(instance, tenant, job=job, tags={"trigger": "test"})


def test_dry_run_reports_every_change_by_email_and_leaves_the_app_untouched(
    register, tenant_slug, engine, smtp_server, fake_tenant
):
    register(tenant_slug, admin_email="admin@fabrikam.test")
    assert run("sync", tenant_slug).success
    # The admin now excludes unlicensed users: the test sync shows the deactivations.
    register(tenant_slug, admin_email="admin@fabrikam.test", exclude_unlicensed=True)
    before = app_rows(engine, tenant_slug)
    result = run("test_sync", tenant_slug)
    assert result.success
    assert app_rows(engine, tenant_slug) == before  # row by row: identical

    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT * FROM sync.runs WHERE tenant = :t AND dry_run"), {"t": tenant_slug}
        ).one()
        planned = conn.execute(
            sa.text("SELECT count(*) FROM sync.diffs WHERE run_id = :r"), {"r": row.id}
        ).scalar()
    assert row.status == "success" and row.dagster_run_id == result.run_id
    assert planned > 0

    [(rcpt, msg)] = smtp_server.messages
    assert rcpt == ["admin@fabrikam.test"]
    assert "Test sync report" in msg["Subject"] and tenant_slug in msg["Subject"]
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "dry run" in plain and "unlicensed" in plain
    assert "user_deactivate" not in plain and "user deactivate" in plain
    assert "<table" in html
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename().endswith("-changes.csv")
    rows = list(csv.DictReader(io.StringIO(attachment.get_content())))
    assert len(rows) == planned
    deactivated = {r["who_or_what"] for r in rows if r["action"] == "deactivate"}
    unlicensed = {
        u["userPrincipalName"].lower()
        for u in fake_tenant["users"]
        if not u["assignedLicenses"] and u["accountEnabled"] and u["userType"] == "Member"
    }
    assert deactivated and {d.lower() for d in deactivated} <= unlicensed

    # seats: the active users before, minus the deactivations, in one sentence
    gone = len(deactivated)
    with engine.connect() as conn:
        active = conn.execute(
            sa.text("SELECT count(*) FROM app.users WHERE tenant = :t AND is_active"),
            {"t": tenant_slug},
        ).scalar()
    seats = f"Seats: +0 / \N{MINUS SIGN}{gone} active, {active - gone:,} after this sync."
    assert seats in plain and seats in html
    diff_meta = result.asset_materializations_for_node("sync_diff")[0].metadata
    assert diff_meta["active_users_after"].value == active - gone
    assert diff_meta["active_users_delta"].value == -gone

    mat = result.asset_materializations_for_node("test_sync_report")[0]
    assert mat.metadata["changes_total"].value == planned
    assert seats in mat.metadata["report"].value
    assert "admin@fabrikam.test" in mat.metadata["sent_to"].value


def test_safety_limit_is_a_warning_in_the_report(register, tenant_slug, smtp_server, fake_tenant):
    register(tenant_slug, admin_email="admin@fabrikam.test")
    assert run("sync", tenant_slug).success
    # Scoping to an empty group would deactivate everyone: far over the limit.
    empty = next(gid for gid, members in fake_tenant["members"].items() if not members)
    register(
        tenant_slug,
        admin_email="admin@fabrikam.test",
        user_scope="selected_groups",
        scope_group_ids=[empty],
    )
    assert run("test_sync", tenant_slug).success
    [(_, msg)] = smtp_server.messages
    assert "warning" in msg["Subject"]
    plain = msg.get_body(("plain",)).get_content()
    # a sync would apply the rest and hold the deactivations for a decision: the report
    # says so, and names the people
    assert "deactivation(s) held" in plain
    assert f"sync-pipeline approve {tenant_slug}" in plain
    assert "deactivation held since" in plain


def test_a_report_too_large_to_email_counts_memberships_per_group(
    register, tenant_slug, engine, smtp_server, monkeypatch, tmp_path
):
    """A first load plans a change per membership (1.4 M for 100k users): over the attachment
    limit the email carries every other change and the memberships per group, and
    `sync-pipeline report` writes the complete list."""
    from sync_pipeline.report import build as report
    from sync_pipeline_tests.support.cli import run_cli

    monkeypatch.setenv("SYNC_PIPELINE_REPORT_MAX_MB", "0.002")  # 2 KB
    register(tenant_slug, admin_email="admin@fabrikam.test")
    result = run("test_sync", tenant_slug)
    assert result.success
    run_id = (
        result.asset_materializations_for_node("test_sync_report")[0].metadata["sync_run_id"].value
    )
    with engine.connect() as conn:
        planned = dict(
            conn.execute(
                sa.text("SELECT entity, count(*) FROM sync.diffs WHERE run_id = :r GROUP BY 1"),
                {"r": run_id},
            ).all()
        )
    assert planned["membership"] > 0

    [(_, msg)] = smtp_server.messages
    [attachment] = list(msg.iter_attachments())
    stem = f"{tenant_slug}-run-{run_id}-changes"
    assert attachment.get_filename() == f"{stem}-summary.zip"
    with zipfile.ZipFile(io.BytesIO(attachment.get_content())) as zf:
        assert zf.namelist() == [f"{stem}-memberships-by-group.csv"]  # 2 KB: the counts alone
        groups = list(csv.DictReader(io.StringIO(zf.read(zf.namelist()[0]).decode())))
    assert sum(int(g["memberships_added"]) for g in groups) == planned["membership"]

    # A limit that the user, group and manager changes fit under, but not the memberships.
    with engine.connect() as conn:
        monkeypatch.setattr(report, "CSV_PLAIN_MAX", 0)
        monkeypatch.setenv("SYNC_PIPELINE_REPORT_MAX_MB", "1000")
        whole = report.changes_attachment(conn, tenant_slug, run_id)
        assert whole.complete and whole.filename == f"{stem}.zip"
        monkeypatch.setenv("SYNC_PIPELINE_REPORT_MAX_MB", str((len(whole.payload) - 1) / 2**20))
        part = report.changes_attachment(conn, tenant_slug, run_id)
    assert not part.complete and part.rows == sum(planned.values())
    with zipfile.ZipFile(io.BytesIO(part.payload)) as zf:
        others = list(
            csv.DictReader(io.StringIO(zf.read(f"{stem}-users-groups-managers.csv").decode()))
        )
        groups = list(
            csv.DictReader(io.StringIO(zf.read(f"{stem}-memberships-by-group.csv").decode()))
        )
    assert len(others) == sum(planned.values()) - planned["membership"]
    assert {r["entity"] for r in others} == set(planned) - {"membership"}
    assert sum(int(g["memberships_added"]) for g in groups) == planned["membership"]
    plain = msg.get_body(("plain",)).get_content()
    assert "too many to email" in plain
    assert f"sync-pipeline report {tenant_slug} {run_id} --csv" in plain

    out = tmp_path / "all.csv"
    done = run_cli("report", tenant_slug, str(run_id), "--csv", str(out))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == sum(planned.values())
    assert sum(r["entity"] == "membership" for r in rows) == planned["membership"]
    missing = run_cli("report", tenant_slug, "999999", "--csv", str(tmp_path / "x.csv"))
    assert missing.returncode == 2 and "no sync run 999999" in missing.stderr + missing.stdout
    assert not (tmp_path / "x.csv").exists()


def test_a_large_csv_is_zipped_whole(register, tenant_slug, smtp_server, monkeypatch):
    from sync_pipeline.report import build as report

    monkeypatch.setattr(report, "CSV_PLAIN_MAX", 512)
    register(tenant_slug, admin_email="admin@fabrikam.test")
    result = run("test_sync", tenant_slug)
    assert result.success
    total = (
        result.asset_materializations_for_node("test_sync_report")[0]
        .metadata["changes_total"]
        .value
    )
    [(_, msg)] = smtp_server.messages
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename().endswith("-changes.zip")
    with zipfile.ZipFile(io.BytesIO(attachment.get_content())) as zf:
        [name] = zf.namelist()
        rows = list(csv.DictReader(io.StringIO(zf.read(name).decode())))
    assert len(rows) == total
    assert "zipped CSV" in msg.get_body(("plain",)).get_content()
