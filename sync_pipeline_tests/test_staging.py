"""Staging refuses Graph data it cannot load, names it, and keeps the previous extraction."""

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.extract.staging import GraphDataError, StagingWriter, member_rows, user_row


def staged_ids(engine: sa.Engine, tenant: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT id FROM staging.users WHERE tenant = :t ORDER BY id"),
                {"t": tenant},
            ).scalars()
        )


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ([{"id": "u-1"}, {"id": "u-1"}], r"could not stage users: Key \(tenant, id\)=.*u-1"),
        ([{"id": "u-1"}, {"displayName": "no id"}], r"user without an id"),
    ],
    ids=["same id twice", "no id"],
)
def test_bad_graph_data_fails_naming_it_and_keeps_the_previous_read(
    engine, tenant_slug, users, message
):
    with engine.begin() as conn:
        writer = StagingWriter(conn, tenant_slug)
        writer.clear("users")
        writer.copy("users", [user_row(tenant_slug, {"id": "old-1"})])
    with pytest.raises(GraphDataError, match=message) as failure, engine.begin() as conn:
        writer = StagingWriter(conn, tenant_slug)
        writer.clear("users")
        writer.copy("users", (user_row(tenant_slug, u) for u in users))
    assert tenant_slug in str(failure.value)
    assert staged_ids(engine, tenant_slug) == ["old-1"]  # rolled back: nothing half-written


def test_member_rows_name_each_type_and_refuse_a_member_without_id():
    members = [
        {"@odata.type": "#microsoft.graph.user", "id": "u-1"},
        {"@odata.type": "#microsoft.graph.group", "id": "g-2"},
        {"@odata.type": "#microsoft.graph.user", "id": "u-3"},
        {"id": "x-4"},  # no @odata.type
        {"@odata.type": ["not", "a", "string"], "id": "x-5"},  # malformed: still a row
    ]
    assert member_rows("t", "g-1", members) == [
        ("t", "g-1", "u-1", "user"),
        ("t", "g-1", "g-2", "group"),
        ("t", "g-1", "u-3", "user"),
        ("t", "g-1", "x-4", "unknown"),
        ("t", "g-1", "x-5", "['not', 'a', 'string']"),
    ]
    with pytest.raises(GraphDataError, match=r"tenant t: group g-1 has a member without id"):
        member_rows("t", "g-1", [*members, {"@odata.type": "#microsoft.graph.user"}])


def test_tables_without_statistics_are_analyzed_once(engine):
    """A first load's tables get statistics in its own transaction (the checks and the diff
    then plan for a million rows, not for an empty table); fresh statistics are left alone."""
    name = f"public.sp_probe_{secrets.token_hex(4)}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {name} (id int)"))
            conn.execute(sa.text(f"INSERT INTO {name} SELECT generate_series(1, 5000)"))
            assert db.analyze_if_stale(conn, [name, "staging.no_such_table"]) == [name]
            tuples = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:n AS regclass)"),
                {"n": name},
            ).scalar_one()
            assert tuples == 5000  # its own uncommitted rows counted
            assert db.analyze_if_stale(conn, [name]) == []
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))


def test_a_small_new_tenant_in_a_shared_table_gets_statistics(engine):
    """A table holding other tenants' rows, analysed: a new tenant of a few hundred rows (a
    fleet's small tenant, first sync) is estimated at a row or so, and gets statistics; a
    tenant the statistics know is left alone."""
    name = f"public.sp_probe_{secrets.token_hex(4)}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {name} (tenant text, id int)"))
            conn.execute(
                sa.text(
                    f"INSERT INTO {name} SELECT 'old-' || (i % 20), i"
                    " FROM generate_series(1, 6000) i"
                )
            )
            conn.execute(sa.text(f"ANALYZE {name}"))
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"INSERT INTO {name} SELECT 'new', i FROM generate_series(1, 300) i")
            )
            assert db.analyze_if_stale(conn, [name], "old-3") == []
            assert db.analyze_if_stale(conn, [name], "new") == [name]
            assert db.analyze_if_stale(conn, [name], "new") == []
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))


@pytest.fixture
def loaded_table(engine: sa.Engine) -> Iterator[str]:
    """A scratch table of 20,000 rows just loaded, committed and analysed, not vacuumed."""
    name = f"public.sp_probe_{secrets.token_hex(4)}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id int, label text)"))
        conn.execute(
            sa.text(f"INSERT INTO {name} SELECT i, md5(i::text) FROM generate_series(1, 20000) i")
        )
        db.analyze_if_stale(conn, [name])
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))


def _pages(engine: sa.Engine, name: str) -> tuple[int, int]:
    """relpages and relallvisible of a table."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT relpages, relallvisible FROM pg_class WHERE oid = CAST(:n AS regclass)"
            ),
            {"n": name},
        ).one()
    return row.relpages, row.relallvisible


def test_a_bulk_loaded_table_is_vacuumed_once(engine, loaded_table):
    """After a load commits, a table with few all-visible pages is vacuumed (its next reads
    can skip visibility checks and use index-only scans); once done, it is left alone."""
    pages, all_visible = _pages(engine, loaded_table)
    assert pages >= 64 and all_visible == 0
    assert db.vacuum_if_needed(engine, [loaded_table, "staging.no_such_table"]) == [loaded_table]
    pages, all_visible = _pages(engine, loaded_table)
    assert all_visible == pages
    assert db.vacuum_if_needed(engine, [loaded_table]) == []


def test_scattered_changes_get_a_vacuum_where_autovacuum_is_off(engine, loaded_table):
    """A daily sync's changes clear the all-visible bit page by page; once they add up to a
    quarter of the pages the sync vacuums, unless autovacuum is on to do it (migration 010)."""
    assert db.vacuum_if_needed(engine, [loaded_table]) == [loaded_table]  # the bulk load
    pages, _ = _pages(engine, loaded_table)
    with engine.begin() as conn:
        # one changed row on every other page: far from a fifth of the rows
        conn.execute(sa.text(f"DELETE FROM {loaded_table} WHERE id % 220 = 0"))
        conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
    with engine.connect() as conn:
        autovacuum = conn.execute(sa.text("SELECT current_setting('autovacuum')")).scalar_one()
        dead = conn.execute(
            sa.text(
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = CAST(:n AS regclass)"
            ),
            {"n": loaded_table},
        ).scalar_one()
    assert dead > 0.25 * pages
    expected = [loaded_table] if autovacuum == "off" else []
    assert db.vacuum_if_needed(engine, [loaded_table]) == expected
    assert db.vacuum_if_needed(engine, [loaded_table]) == []
