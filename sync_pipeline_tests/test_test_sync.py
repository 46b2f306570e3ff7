"""The test sync (the wizard's step 12): a dry run whose report reaches the admin by email."""

import csv
import io

import dagster as dg
import sqlalchemy as sa

from sync_pipeline.definitions import defs
from sync_pipeline.defs.partitions import TENANT_PARTITIONS

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
        instance.add_dynamic_partitions(TENANT_PARTITIONS, [tenant])
        return defs.resolve_job_def(job).execute_in_process(
            partition_key=tenant, instance=instance, tags={"trigger": "test"}
        )


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

    mat = result.asset_materializations_for_node("test_sync_report")[0]
    assert mat.metadata["changes_total"].value == planned
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
    assert "--allow-mass-deactivation" in plain
