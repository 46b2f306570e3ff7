"""Checks that cost what changed (checks/scope.py): a daily check validates the rows that
changed plus aggregates over all (counts, addresses held twice); every check runs whole when
it never has, when its last whole pass is older than full_verification_days, after a full
read and after a full rebuild of the snapshot. Real Postgres; rows written with plain SQL
(the triggers of migrations 014 and 015 record the change set, as for any writer)."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from sync_pipeline.checks import expectations, scope
from sync_pipeline.transform import rules
from sync_pipeline_tests.support.pipeline import materialise
from sync_pipeline_tests.support.rows import group, make_settings, stage, user

SNAPSHOT_SQL = (
    "INSERT INTO sync.snapshot_users (tenant, graph_id, included, email, manager_graph_id)"
    " VALUES (:t, :g, true, :e, :m)"
)


def settle(conn: sa.Connection, tenant: str) -> None:
    """What an apply does to the change set: everything seen is in line now; the snapshot
    was last built incrementally."""
    conn.execute(sa.text("DELETE FROM sync.diff_dirty WHERE tenant = :t"), {"t": tenant})
    conn.execute(sa.text("DELETE FROM sync.touched WHERE tenant = :t"), {"t": tenant})
    conn.execute(
        sa.text(
            "INSERT INTO sync.snapshot_state (tenant, fingerprint, users, groups, memberships,"
            " path) VALUES (:t, '', 0, 0, 0, 'incremental') ON CONFLICT (tenant) DO UPDATE"
            " SET path = 'incremental'"
        ),
        {"t": tenant},
    )


def failure_text(result) -> str:
    """The description of the run's failed step."""
    step = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return step.step_failure_data.user_failure_data.description


def failed(outcome: expectations.Outcome) -> set[str]:
    return {f.expectation for f in outcome.failures}


def test_snapshot_users_daily_sees_changes_and_the_whole_pass_the_rest(engine):
    t = f"cs-{secrets.token_hex(4)}"
    settings = make_settings(t)
    with engine.connect() as conn:
        for g, e, m in (("u1", "a@x.com", None), ("u2", "b@x.com", "u1"), ("u3", "c@x.com", "u1"),
                        ("u4", "d@x.com", "u3")):  # fmt: skip
            conn.execute(sa.text(SNAPSHOT_SQL), {"t": t, "g": g, "e": e, "m": m})
        conn.commit()
        # the first check of a tenant is whole, and a clean whole pass is recorded
        first = scope.decide(conn, settings, "snapshot_users_valid", "snapshot")
        assert first.whole and first.reason == "never_verified"
        outcome = expectations.check_snapshot_users(conn, settings, first)
        assert outcome.passed and outcome.rows == 4
        scope.record(conn, t, first, outcome.passed)
        settle(conn, t)
        conn.commit()

        # nothing changed: a daily check reads no user row
        daily = scope.decide(conn, settings, "snapshot_users_valid", "snapshot")
        assert not daily.whole and daily.verified_at is not None
        outcome = expectations.check_snapshot_users(conn, settings, daily)
        assert outcome.passed and outcome.rows == 0
        assert outcome.facts["verification"] == "changed rows"
        assert outcome.facts["whole_verification_age_hours"] < 1

        # a changed row closes a manager cycle through unchanged ones: found from the change
        conn.execute(sa.text("UPDATE sync.snapshot_users SET manager_graph_id = 'u4'"
                             " WHERE tenant = :t AND graph_id = 'u1'"), {"t": t})  # fmt: skip
        # a new row takes an unchanged row's address: the aggregate over all finds both
        conn.execute(sa.text(SNAPSHOT_SQL), {"t": t, "g": "u5", "e": "B@x.com", "m": None})
        outcome = expectations.check_snapshot_users(conn, settings, daily)
        assert failed(outcome) == {
            "expect_column_values_to_be_in_set(manager_chain_ends)",
            "expect_column_values_to_be_unique(address_key)",
        }
        assert outcome.rows < 6  # u1, its reports u2 and u3, u5 and the address's holder u2
        conn.rollback()

        # a row broken behind the change set's back (triggers off: a restore, a hand edit in
        # another tool) is not seen daily; the whole pass, when due, finds it
        conn.execute(sa.text("SET session_replication_role = replica"))
        conn.execute(sa.text("UPDATE sync.snapshot_users SET manager_graph_id = 'gone'"
                             " WHERE tenant = :t AND graph_id = 'u4'"), {"t": t})  # fmt: skip
        conn.execute(sa.text("SET session_replication_role = origin"))
        conn.commit()
        assert expectations.check_snapshot_users(conn, settings, daily).passed
        conn.execute(sa.text("UPDATE sync.verifications SET verified_at = now() - interval"
                             " '8 days' WHERE tenant = :t"), {"t": t})  # fmt: skip
        due = scope.decide(conn, settings, "snapshot_users_valid", "snapshot")
        assert due.whole and due.reason == "due"
        assert due.facts()["whole_verification_age_hours"] >= 8 * 24
        outcome = expectations.check_snapshot_users(conn, settings, due)
        assert failed(outcome) == {"expect_column_values_to_be_in_set(manager_known)"}
        scope.record(conn, t, due, outcome.passed)  # a failed whole pass is not recorded
        assert scope.decide(conn, settings, "snapshot_users_valid", "snapshot").whole
        # a longer period, set per tenant, makes it daily again
        longer = make_settings(t, full_verification_days=30)
        assert not scope.decide(conn, longer, "snapshot_users_valid", "snapshot").whole
        # a full rebuild of the snapshot makes the next snapshot checks whole
        conn.execute(sa.text("UPDATE sync.snapshot_state SET path = 'full' WHERE tenant = :t"),
                     {"t": t})  # fmt: skip
        rebuilt = scope.decide(conn, longer, "snapshot_users_valid", "snapshot")
        assert rebuilt.whole and rebuilt.reason == "full_rebuild"
        conn.rollback()


def test_staging_daily_sees_the_rows_written_and_counts_all(engine):
    t = f"cs-{secrets.token_hex(4)}"
    settings = make_settings(t)
    insert = sa.text(
        "INSERT INTO staging.users (tenant, id, user_principal_name, account_enabled)"
        " VALUES (:t, :i, :u, :e)"
    )
    with engine.connect() as conn:
        for i in range(5):
            conn.execute(insert, {"t": t, "i": f"u{i}", "u": f"u{i}@x.com", "e": True})
        conn.execute(sa.text("INSERT INTO sync.verifications (tenant, check_name) VALUES"
                             " (:t, 'staging_users_valid')"), {"t": t})  # fmt: skip
        settle(conn, t)
        conn.commit()
        # a delta round writes one user, without accountEnabled
        conn.execute(insert, {"t": t, "i": "u9", "u": "u9@x.com", "e": None})
        daily = scope.decide(conn, settings, "staging_users_valid", "staging")
        assert not daily.whole
        outcome = expectations.check_staging_users(conn, t, daily)
        assert outcome.rows == 1
        assert failed(outcome) == {"expect_column_values_to_not_be_null(account_enabled)"}
        assert outcome.facts["rows_staged"] == 6  # counted over all
        # a full read makes the staging checks whole
        conn.execute(sa.text("INSERT INTO sync.touched (tenant, kind, id) VALUES"
                             " (:t, 'full', '')"), {"t": t})  # fmt: skip
        whole = scope.decide(conn, settings, "staging_users_valid", "staging")
        assert whole.whole and whole.reason == "full_read"
        assert expectations.check_staging_users(conn, t, whole).rows == 6
        conn.rollback()


def test_weekly_verification_compares_the_incremental_snapshot_with_a_rebuild(engine):
    """A snapshot row broken behind the change set's back (triggers off) survives the
    incremental transform; the whole verification rebuilds, names the row, keeps the
    rebuild, and makes the next transform a full one."""
    t = f"cs-{secrets.token_hex(4)}"
    settings = make_settings(t)
    with engine.begin() as conn:
        stage(conn, t, users=[user(f"u{i}") for i in range(1, 11)])
        rules.refresh_snapshot(conn, settings)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE staging.users SET job_title = 'Lead' WHERE tenant = :t"
                             " AND id = 'u1'"), {"t": t})  # fmt: skip
        _, clean = rules.refresh_snapshot(conn, settings, verify=True)
        assert (clean.path, clean.verified, clean.mismatch_count) == ("incremental", "match", 0)
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("UPDATE sync.snapshot_users SET display_name = 'Wrong'"
                             " WHERE tenant = :t AND graph_id = 'u2'"), {"t": t})  # fmt: skip
    with engine.begin() as conn:
        _, daily = rules.refresh_snapshot(conn, settings)
        assert daily.path == "incremental"  # the daily path cannot see it
        _, found = rules.refresh_snapshot(conn, settings, verify=True)
        assert found.verified == "mismatch" and found.mismatch_count == 2
        assert found.mismatches == (
            ("snapshot_users", "u2", "full"),
            ("snapshot_users", "u2", "incremental"),
        )
        kept = "SELECT display_name FROM sync.snapshot_users WHERE tenant = :t AND graph_id = 'u2'"
        name = conn.execute(sa.text(kept), {"t": t}).scalar()
        assert name != "Wrong"  # the rebuild was kept
        _, after = rules.refresh_snapshot(conn, settings)
        assert (after.path, after.full_reason) == ("full", "first_build")


def test_a_verification_mismatch_blocks_the_sync_and_names_the_rows(
    instance, database_url, engine, register
):
    slug = f"cs-{secrets.token_hex(4)}"
    register(slug)
    assert materialise(instance, slug, database_url=database_url).success
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        graph_id = conn.execute(
            sa.text("UPDATE sync.snapshot_users SET job_title = 'Wrong' WHERE graph_id = ("
                    " SELECT min(graph_id) FROM sync.snapshot_users WHERE tenant = :t"
                    " AND included) AND tenant = :t RETURNING graph_id"), {"t": slug}
        ).scalar_one()  # fmt: skip
        conn.execute(sa.text("UPDATE sync.verifications SET verified_at = now() - interval"
                             " '8 days' WHERE tenant = :t"), {"t": slug})  # fmt: skip
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert f"snapshot_users {graph_id} (only in the full result)" in text, text
    assert "Nothing was applied" in text
    assert not result.asset_materializations_for_node("app_directory")
    # the next sync rebuilds in full, and passes its whole checks
    again = materialise(instance, slug, database_url=database_url)
    assert again.success
    meta = again.asset_materializations_for_node("directory_snapshot")[0].metadata
    assert meta["transform_path"].value == "full"
    # the same for the diff: an app row changed behind the change set's back
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        external_id = conn.execute(
            sa.text("UPDATE app.users SET department = 'Hidden' WHERE id = (SELECT min(id)"
                    " FROM app.users WHERE tenant = :t AND is_active AND source = 'm365')"
                    " RETURNING external_id"), {"t": slug}
        ).scalar_one()  # fmt: skip
        conn.execute(sa.text("UPDATE sync.verifications SET verified_at = now() - interval"
                             " '8 days' WHERE tenant = :t"), {"t": slug})  # fmt: skip
    blocked = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert not blocked.success
    assert f"user update {external_id} (only in the whole result)" in failure_text(blocked)
    assert not blocked.asset_materializations_for_node("app_directory")
    assert materialise(instance, slug, database_url=database_url).success


def test_staging_members_daily_sees_written_lists_and_users_gone(engine):
    t = f"cs-{secrets.token_hex(4)}"
    settings = make_settings(t)
    with engine.connect() as conn:
        stage(conn, t, users=[user(f"u{i}") for i in range(6)],
              groups=[group(f"g{i}") for i in range(1, 26)],
              members={"g1": ["u0", "u1", "u2"], "g2": ["u3", "u4"]})  # fmt: skip
        conn.execute(sa.text("INSERT INTO sync.verifications (tenant, check_name) VALUES"
                             " (:t, 'staging_members_valid')"), {"t": t})  # fmt: skip
        settle(conn, t)
        conn.commit()
        daily = scope.decide(conn, settings, "staging_members_valid", "staging")
        assert not daily.whole
        quiet = expectations.check_staging_members(conn, t, daily)
        assert quiet.passed and quiet.rows == 0 and quiet.facts["rows_staged"] == 5
        # a user deleted while g2 still lists it, and g1's list rewritten with a ghost
        conn.execute(sa.text("DELETE FROM staging.users WHERE tenant = :t AND id = 'u4'"), {"t": t})
        ghost = (
            "INSERT INTO staging.group_members (tenant, group_id, member_id, member_type)"
            " VALUES (:t, 'g1', 'ghost', 'user')"
        )
        conn.execute(sa.text(ghost), {"t": t})
        outcome = expectations.check_staging_members(conn, t, daily)
        bad = outcome.failures[0]
        assert bad.expectation == "expect_column_values_to_be_in_set(missing_members)"
        assert bad.unexpected_count == 2  # g1 (the ghost) and g2 (u4, its list unchanged)
        # one group of 25 written: the daily query ran, not the whole one
        assert outcome.facts["verification"] == "changed rows", outcome.facts
        conn.rollback()
        # a group's row gone while its members stay: found from the group's row alone (one
        # member read, migration 017), not from its member list
        conn.execute(
            sa.text("DELETE FROM staging.groups WHERE tenant = :t AND id = 'g1'"), {"t": t}
        )
        orphan = expectations.check_staging_members(conn, t, daily)
        assert not orphan.passed
        assert any("group_staged" in f.expectation for f in orphan.failures), orphan.failures
        assert orphan.facts["verification"] == "changed rows", orphan.facts
        conn.rollback()
