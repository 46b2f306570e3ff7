"""Data-quality checks: bad data from the fake Graph fails a blocking check, the apply is
skipped and app.* is unchanged; good data passes every check. Real Postgres, fake Graph over
HTTPS, each scenario on its own generated Graph tenant so nothing leaks between tests."""

from __future__ import annotations

import os
import secrets

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from sync_pipeline.checks import expectations
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.definitions import defs
from sync_pipeline.fakegraph import generate_tenant
from sync_pipeline.transform import addresses
from sync_pipeline_tests.support.database import app_state
from sync_pipeline_tests.support.fakegraph import new_tenant, start_fake
from sync_pipeline_tests.support.pipeline import evaluations, materialise

SCENARIOS = ("good", "collision", "cycle", "ghost", "count", "blank", "drift", "mass")
GHOST_ID = "00000000-0000-4000-8000-00000000dead"


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    """One small generated Graph tenant per scenario; the ghost one lists, among a group's
    members, a user object that the users read never returns."""
    out = {
        name: generate_tenant(name=f"qc-{name}", users=40, seed=11 + i, domain=f"{name}.example")
        for i, name in enumerate(SCENARIOS)
    }
    ghost = out["ghost"]
    ghost["other_objects"] = [
        *ghost.get("other_objects", []),
        {"id": GHOST_ID, "@odata.type": "#microsoft.graph.user", "displayName": "Ghost"},
    ]
    return out


@pytest.fixture(scope="module")
def fake(docs, tmp_path_factory):
    # count_lag=0: the drift test adds half a tenant right before a sync, which Graph's
    # lagging $count would rightly refuse as a lost read (test_graph_realism covers the lag)
    server = start_fake(
        list(docs.values()), tmp_path_factory.mktemp("fakegraph-checks"), count_lag=0.0
    )
    yield server
    server.stop()


def assert_blocked(result, engine, slug, before, check_name: str, expectation: str) -> dict:
    """The check failed with ERROR, the apply did not run, app.* is unchanged."""
    assert not result.success
    found = evaluations(result)
    failed = found[check_name]
    assert not failed.passed
    assert failed.severity == dg.AssetCheckSeverity.ERROR
    table = failed.metadata["failed_expectations"].value
    assert expectation in table, table
    assert not result.asset_materializations_for_node("app_directory")
    assert app_state(engine, slug) == before
    with engine.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM sync.runs WHERE tenant = :t AND dagster_run_id = :r"),
            {"t": slug, "r": result.run_id},
        ).scalar()
    assert status in (None, "failed")
    return found


def first_sync(instance, database_url, engine, slug) -> tuple:
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert result.success
    return app_state(engine, slug)


# -- definitions ----------------------------------------------------------------------------------


def test_checks_sit_beside_their_assets_and_block():
    graph = defs.get_repository_def().asset_graph
    listed = {
        (k.asset_key.to_user_string(), k.name): graph.get_check_spec(k)
        for k in graph.asset_check_keys
    }
    assert set(listed) >= {
        ("graph_users", "staging_users_valid"),
        ("graph_groups", "staging_groups_valid"),
        ("graph_group_members", "staging_members_valid"),
        ("snapshot_users", "snapshot_users_valid"),
        ("snapshot_users", "snapshot_users_drift"),
        ("snapshot_groups", "snapshot_groups_valid"),
        ("snapshot_memberships", "snapshot_memberships_valid"),
        ("snapshot_users", "snapshot_odd_rows"),
        ("sync_diff", "sync_diff_within_safety_limit"),
        ("sync_diff", "sync_diff_keeps_addresses_and_names"),
        ("sync_diff", "sync_diff_nothing_held_long"),
        ("graph_users", "graph_users_fresh"),
    }
    for (asset, name), spec in listed.items():
        # advisory only: odd Graph rows never stop a sync, nor do changes held for review,
        # nor an old read (a sync is what ends it)
        if name in ("snapshot_odd_rows", "sync_diff_nothing_held_long", "graph_users_fresh"):
            assert not spec.blocking
        elif asset.startswith(("snapshot_", "sync_diff")):
            assert spec.blocking, f"{asset}:{name} must block the apply"
        assert spec.description, f"{asset}:{name} has no description"


# -- through the sync job -------------------------------------------------------------------------


def test_good_data_passes_every_check(
    instance, database_url, engine, docs, fake, tmp_path, monkeypatch
):
    slug = new_tenant(engine, "qc", docs["good"], fake, import_managers=True)
    monkeypatch.chdir(tmp_path)  # an empty working directory, to see whether anything lands
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert result.success
    found = evaluations(result)
    assert len(found) == 12
    odd = found.pop("snapshot_odd_rows")
    assert all(e.passed for e in found.values()), {
        n: e.metadata for n, e in found.items() if not e.passed
    }
    # a generated tenant is a real-looking one: it has odd rows (case-only duplicate UPNs, a
    # manager ring, a nesting cycle), which the advisory check counts without blocking
    assert not odd.passed and odd.severity == dg.AssetCheckSeverity.WARN
    assert odd.metadata["odd_manager_cycle"].value == 1
    assert odd.metadata["odd_nesting_cycle"].value == 2
    assert odd.metadata["odd_duplicate_email"].value >= 1
    assert result.asset_materializations_for_node("app_directory")
    # quiet: GX keeps everything in memory (no gx/ folder or other files in the working tree)
    assert list(tmp_path.iterdir()) == []
    context = expectations._context()
    assert context.variables.progress_bars.globally is False
    assert os.environ["GX_ANALYTICS_ENABLED"] == "False"


def test_addresses_colliding_after_normalisation_are_one_address(
    instance, database_url, engine, docs, fake
):
    """A full-width twin of an imported address is the same address once normalised: the
    transform leaves the newer user out as duplicate_email (it used to reach the snapshot and
    stop the sync at the uniqueness check), and the advisory check counts it."""
    doc = docs["collision"]
    slug = new_tenant(engine, "qc", doc, fake)
    before = first_sync(instance, database_url, engine, slug)
    victim = next(r for r in before[0] if r[1] == slug)  # (id, tenant, external_id, email, ...)
    local, domain = victim[3].split("@")
    twin = "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in local)
    twin_id = fake.add_user(
        doc["tenant_id"],
        {"userPrincipalName": f"{twin.upper()}@{domain}", "displayName": "Twin"},
    )
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert result.success
    found = evaluations(result)
    assert found["snapshot_users_valid"].passed
    odd = found["snapshot_odd_rows"]
    assert odd.severity == dg.AssetCheckSeverity.WARN
    assert twin_id in odd.metadata["failed_expectations"].value
    after = app_state(engine, slug)[0]
    assert [r[2] for r in after] == [r[2] for r in before[0]]  # the twin got no app row
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT included, reason, email FROM sync.snapshot_users"
                " WHERE tenant = :t AND graph_id = :g"
            ),
            {"t": slug, "g": twin_id},
        ).one()
    assert (row.included, row.reason) == (False, "duplicate_email")
    assert row.email.lower() == victim[3].lower()  # stored in its clean (NFKC) form


def test_a_manager_cycle_is_cut_at_its_lowest_id(instance, database_url, engine, docs, fake):
    """A new manager cycle no longer stops the sync (the blocking check used to): the transform
    cuts the link of the member with the lowest Graph id, the others keep their managers."""
    doc = docs["cycle"]
    slug = new_tenant(engine, "qc", doc, fake, import_managers=True)
    first_sync(instance, database_url, engine, slug)
    with engine.connect() as conn:
        plain = conn.execute(
            sa.text(
                "SELECT graph_id FROM sync.snapshot_users WHERE tenant = :t AND included"
                " AND manager_note IS NULL ORDER BY graph_id LIMIT 3"
            ),
            {"t": slug},
        ).scalars()
        a, b, c = plain
    fake.set_manager(doc["tenant_id"], a, b)
    fake.set_manager(doc["tenant_id"], b, c)
    fake.set_manager(doc["tenant_id"], c, a)
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert result.success
    assert evaluations(result)["snapshot_users_valid"].passed
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT u.external_id, m.external_id AS manager FROM app.users u"
                " LEFT JOIN app.users m ON m.id = u.manager_id"
                " WHERE u.tenant = :t AND u.external_id = ANY (:ids)"
            ),
            {"t": slug, "ids": [a, b, c]},
        ).all()
        note = conn.execute(
            sa.text(
                "SELECT manager_note FROM sync.snapshot_users WHERE tenant = :t AND graph_id = :g"
            ),
            {"t": slug, "g": a},
        ).scalar()
    assert dict(rows) == {a: None, b: c, c: a}  # a has the lowest id of the three
    assert note == f"manager_cycle:{a} {b} {c}"


def test_the_manager_cycle_guard_still_catches_a_cycle_in_the_snapshot(engine):
    """The transform never writes a manager cycle; the blocking check is the guard of that
    invariant and must still fail (ERROR) on a snapshot that has one."""
    slug = f"qc-{secrets.token_hex(4)}"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sync.snapshot_users (tenant, graph_id, included, email,"
                " manager_graph_id) VALUES"
                " (:t, 'u1', true, 'a@x.com', 'u2'), (:t, 'u2', true, 'b@x.com', 'u1'),"
                " (:t, 'u3', true, 'c@x.com', 'u1'), (:t, 'u4', true, 'd@x.com', NULL)"
            ),
            {"t": slug},
        )
        settings = TenantSettings(
            slug=slug,
            tenant_id="00000000-0000-0000-0000-000000000000",
            client_id="11111111-1111-1111-1111-111111111111",
            fake_tenant="contoso-demo",
        )
        users = expectations.check_snapshot_users(conn, settings)
        conn.rollback()
    assert users.severity == expectations.ERROR
    (failure,) = users.failures
    assert failure.expectation == "expect_column_values_to_be_in_set(manager_chain_ends)"
    assert failure.unexpected_count == 3  # u1 and u2 on the cycle, u3 below it


def test_a_member_pointing_at_a_missing_user_blocks_the_apply(
    instance, database_url, engine, docs, fake
):
    doc = docs["ghost"]
    slug = new_tenant(engine, "qc", doc, fake)
    before = first_sync(instance, database_url, engine, slug)
    group = next(g["id"] for g in doc["groups"] if "Unified" in g["groupTypes"])
    fake.add_members(doc["tenant_id"], group, [GHOST_ID])
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    found = assert_blocked(result, engine, slug, before, "staging_members_valid", "missing_members")
    assert GHOST_ID in found["staging_members_valid"].metadata["failed_expectations"].value
    assert not result.asset_materializations_for_node("directory_snapshot")


def test_a_staging_count_mismatch_blocks_the_apply(instance, database_url, engine, docs, fake):
    """What the extraction recorded must be what staging holds. The extraction reconciles
    with Graph's $count inside its transaction, so the mismatch is made in the database: a
    trigger (this tenant only) records one user more than was staged."""
    slug = new_tenant(engine, "qc", docs["count"], fake)
    before = first_sync(instance, database_url, engine, slug)
    function = f"qc_inflate_{slug.replace('-', '_')}"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE FUNCTION staging.{function}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN NEW.rows := NEW.rows + 1; RETURN NEW; END $$"
            )
        )
        conn.execute(
            sa.text(
                f"CREATE TRIGGER {function} BEFORE INSERT ON staging.extractions "
                f"FOR EACH ROW WHEN (NEW.tenant = '{slug}' AND NEW.entity = 'users') "
                f"EXECUTE FUNCTION staging.{function}()"
            )
        )
    try:
        result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TRIGGER {function} ON staging.extractions"))
            conn.execute(sa.text(f"DROP FUNCTION staging.{function}()"))
    # a daily check (checks/scope.py) counts every staged user apart from the changed rows
    found = assert_blocked(
        result, engine, slug, before, "staging_users_valid", "expect_column_pair_values_to_be_equal"
    )
    meta = found["staging_users_valid"].metadata
    assert "staged rows = rows the extraction counted" in meta["failed_expectations"].value
    assert meta["verification"].value == "changed rows"
    assert meta["rows_extracted"].value == meta["rows_staged"].value + 1


def test_an_update_that_blanks_a_name_blocks_the_apply(instance, database_url, engine, docs, fake):
    doc = docs["blank"]
    slug = new_tenant(engine, "qc", doc, fake)
    before = first_sync(instance, database_url, engine, slug)
    user = before[0][0]
    fake.update_user(doc["tenant_id"], user[2], displayName="  ")
    result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    found = assert_blocked(
        result, engine, slug, before, "sync_diff_keeps_addresses_and_names", "new_value"
    )
    assert (
        user[3]
        in found["sync_diff_keeps_addresses_and_names"].metadata["failed_expectations"].value
    )


def test_drift_warns_without_blocking_then_errors(instance, database_url, engine, docs, fake):
    doc = docs["drift"]
    slug = new_tenant(engine, "qc", doc, fake)
    before = first_sync(instance, database_url, engine, slug)
    imported = len(before[0])
    grow = max(2, imported * 15 // 100)  # +15%: over the 10% warning, under the 30% error
    for i in range(grow):
        fake.add_user(doc["tenant_id"], {"userPrincipalName": f"new{i}@drift.example"})
    warned = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert warned.success  # WARN does not block
    drift = evaluations(warned)["snapshot_users_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    after_warn = app_state(engine, slug)
    assert len(after_warn[0]) == imported + grow
    for i in range(len(after_warn[0]) // 2):
        fake.add_user(doc["tenant_id"], {"userPrincipalName": f"more{i}@drift.example"})
    assert_blocked(
        materialise(instance, slug, database_url=database_url, raise_on_error=False),
        engine,
        slug,
        after_warn,
        "snapshot_users_drift",
        "drift_error_percent",
    )


def test_mass_deactivation_is_held_unless_the_operator_allows_it(
    instance, database_url, engine, docs, fake
):
    """Over the safety limit the sync applies the rest and holds the deactivations (the
    deactivation gate, load/gate.py): the safety check passes on what is applied, the held
    check reports them; an operator's allow_mass_deactivation lets them through, warned."""
    doc = docs["mass"]
    slug = new_tenant(engine, "qc", doc, fake)
    before = first_sync(instance, database_url, engine, slug)
    leavers = [r[2] for r in before[0][: len(before[0]) // 5]]  # 20%: over the 10% limit
    for uid in leavers:
        fake.delete_user(doc["tenant_id"], uid)
    held = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    assert held.success
    found = evaluations(held)
    assert found["sync_diff_within_safety_limit"].passed
    waiting = found["sync_diff_nothing_held_long"]
    assert waiting.passed and waiting.metadata["held"].value == len(leavers)
    assert found["snapshot_users_drift"].severity == dg.AssetCheckSeverity.WARN  # 20% < 30%
    (applied,) = held.asset_materializations_for_node("app_directory")
    assert applied.metadata["user_deactivate"].value == 0
    (planned,) = held.asset_materializations_for_node("sync_diff")
    assert planned.metadata["gate_deactivate_held"].value == len(leavers)
    assert f"sync-pipeline held {slug}" in planned.metadata["withheld"].value
    assert app_state(engine, slug) == before  # held people keep everything

    dry = materialise(
        instance, slug, job="test_sync", database_url=database_url, raise_on_error=False
    )
    assert dry.success
    assert app_state(engine, slug) == before

    allowed = materialise(
        instance,
        slug,
        database_url=database_url,
        raise_on_error=False,
        run_config={"ops": {"app_directory": {"config": {"allow_mass_deactivation": True}}}},
    )
    assert allowed.success
    found = evaluations(allowed)
    for name in ("sync_diff_within_safety_limit", "snapshot_users_drift"):
        assert not found[name].passed and found[name].severity == dg.AssetCheckSeverity.WARN
    active = [r for r in app_state(engine, slug)[0] if r[10]]  # is_active
    assert len(active) == len(before[0]) - len(leavers)


# -- invariants the transform keeps: the suites still catch a snapshot that breaks them -----------


def test_snapshot_suites_catch_what_the_transform_never_writes(engine):
    slug = f"qc-{secrets.token_hex(4)}"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sync.snapshot_users (tenant, graph_id, included, email,"
                " manager_graph_id) VALUES"
                " (:t, 'u1', true, 'a@x.com', 'nobody'),"
                " (:t, 'u2', true, 'ceo@x.com', NULL),"
                " (:t, 'u3', true, 'b@contractors.x.com', NULL)"
            ),
            {"t": slug},
        )
        conn.execute(
            sa.text(
                "INSERT INTO sync.snapshot_groups (tenant, graph_id, included, name, group_kind)"
                " VALUES (:t, 'g1', true, :blank, 'security')"
            ),
            {"t": slug, "blank": "\u00a0"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO sync.snapshot_memberships (tenant, group_graph_id, user_graph_id)"
                " VALUES (:t, 'g1', 'u1'), (:t, 'g1', 'u9'), (:t, 'g9', 'u1')"
            ),
            {"t": slug},
        )
        settings = TenantSettings(
            slug=slug,
            tenant_id="00000000-0000-0000-0000-000000000000",
            client_id="11111111-1111-1111-1111-111111111111",
            fake_tenant="contoso-demo",
            email_deny_list=["CEO@x.com", "*@contractors.x.com"],
        )
        users = expectations.check_snapshot_users(conn, settings)
        groups = expectations.check_snapshot_groups(conn, slug)
        members = expectations.check_snapshot_memberships(conn, slug)
        conn.rollback()
    failed = lambda o: {f.expectation for f in o.failures}  # noqa: E731
    assert failed(users) == {
        "expect_column_values_to_not_be_in_set(address_key)",
        "expect_column_values_to_not_be_in_set(address_domain)",
        "expect_column_values_to_be_in_set(manager_known)",
    }
    assert failed(groups) == {"expect_column_values_to_not_match_regex(name)"}
    assert failed(members) == {
        "expect_column_values_to_be_in_set(group_imported)",
        "expect_column_values_to_be_in_set(unknown_users)",
    }
    assert users.severity == groups.severity == members.severity == expectations.ERROR


def test_staging_members_suite_knows_members_by_id_and_other_types(engine):
    slug = f"qc-{secrets.token_hex(4)}"
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO staging.users (tenant, id) VALUES (:t, 'u1'), (:t, 'u2')"),
            {"t": slug},
        )
        conn.execute(
            sa.text("INSERT INTO staging.groups (tenant, id) VALUES (:t, 'g1'), (:t, 'g2')"),
            {"t": slug},
        )
        conn.execute(
            sa.text(
                "INSERT INTO staging.group_members (tenant, group_id, member_id, member_type)"
                " VALUES (:t, 'g1', 'u1', 'user'), (:t, 'g1', 'g2', 'group'),"
                " (:t, 'g1', 'c1', 'orgContact'), (:t, 'g2', 'u2', 'user'),"
                " (:t, 'g2', 'gone', 'user'), (:t, 'g2', 'x1', 'somethingNew'),"
                " (:t, 'g9', 'u1', 'user')"
            ),
            {"t": slug},
        )
        members = expectations.check_staging_members(conn, slug)
        # the extraction counted one membership more than staging holds
        conn.execute(
            sa.text(
                "INSERT INTO staging.extractions (tenant, entity, rows, requests)"
                " VALUES (:t, 'group_members', 8, 1)"
            ),
            {"t": slug},
        )
        miscounted = expectations.check_staging_members(conn, slug)
        frame = expectations.load(
            conn,
            "staging_members",
            {"tenant": slug, "other_types": list(expectations.OTHER_MEMBER_TYPES)},
        )
        conn.rollback()
    rows = {r.group_id: r for r in frame.itertuples()}
    assert (rows["g1"].missing_members, rows["g1"].group_staged) == (0, True)
    assert (rows["g2"].missing_members, rows["g2"].unknown_type_members) == (1, 1)
    assert rows["g2"].missing_sample == "user:gone"
    assert rows["g2"].unknown_type_sample == "somethingNew:x1"
    assert rows["g9"].group_staged is False
    assert set(frame["memberships_staged"]) == {7}
    assert {(f.expectation, f.severity) for f in members.failures} == {
        ("expect_column_values_to_be_in_set(group_staged)", expectations.ERROR),
        ("expect_column_values_to_be_in_set(missing_members)", expectations.ERROR),
        # a member of a type we do not know is a Graph row the transform ignores: WARN only
        ("expect_column_values_to_be_in_set(unknown_type_members)", expectations.WARN),
    }
    assert members.facts["rows_staged"] == 7
    counted = {f.expectation: f for f in miscounted.failures}
    assert set(counted) - {f.expectation for f in members.failures} == {
        "expect_column_pair_values_to_be_equal"
    }
    assert counted["expect_column_pair_values_to_be_equal"].sample == (
        {"staged": 7, "extracted": 8},
    )
    assert miscounted.severity == expectations.ERROR


def test_manager_chains_end_unless_they_cycle():
    ids = pd.Series(["a", "b", "c", "d", "e", "f", "g", "h"], dtype=object)
    # a <- b <- c: ends at a; d -> e -> f -> d: a cycle; g below the cycle; h manages itself
    managers = pd.Series([None, "a", "b", "e", "f", "d", "d", "h"], dtype=object)
    ends = expectations.manager_chain_ends(ids, managers)
    assert dict(zip(ids, ends.tolist(), strict=True)) == {
        "a": True, "b": True, "c": True, "d": False,
        "e": False, "f": False, "g": False, "h": False,
    }  # fmt: skip
    # a manager who is not imported ends the chain; one long chain ends too
    long = pd.Series([f"u{i}" for i in range(1000)], dtype=object)
    above = pd.Series(["outsider"] + [f"u{i}" for i in range(999)], dtype=object)
    assert expectations.manager_chain_ends(long, above).all()
    assert expectations.manager_chain_ends(pd.Series([], dtype=object), pd.Series([])).size == 0


ODD_ADDRESSES = [
    "Alice@X.com",
    " alice@x.com\u00a0",
    "\uff21LICE@x.com",
    "alice@x.com\t",
    "\u3000alice@x.com\u2028",
    "\x1f\tA@x.com\x0b ",  # ASCII only: the fast path without normalize()
    "\ufb01ona@x.com",
    "Straße@x.com",
    "STRASSE@x.com",
    "\u00a8x@x.com",  # NFKC makes this " \u0308x@...": the space is trimmed after NFKC
    "a\u00a0b@x.com",  # a space inside once normalised: not an address
    "\u00a0\u2003",
    "",
]


def test_address_keys_ignore_case_width_and_spaces(engine):
    """The one key (addresses.py): NFKC, Unicode whitespace trimmed, lower-cased; the SQL
    functions of migration 012 and the Python mirror agree on odd inputs, and so do the
    Postgres and Python readings of the address pattern."""
    for raw in ["Alice@X.com", " alice@x.com\u00a0", "\uff21LICE@x.com", "alice@x.com\t"]:
        assert addresses.key(raw) == "alice@x.com"
    assert addresses.key("\ufb01ona@x.com") == "fiona@x.com"
    # lower(), not casefold(): the app's unique index is on lower(email), and these are two
    # mailboxes
    assert addresses.key("Straße@x.com") == "straße@x.com" != addresses.key("STRASSE@x.com")
    assert addresses.key(None) is None and addresses.key(" \u00a0") is None
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT v, sync.clean_address(v) AS clean, sync.address_key(v) AS key,"
                " coalesce(sync.clean_address(v) ~ :re, false) AS ok"
                " FROM unnest(CAST(:values AS text[])) AS v"
            ),
            {"values": ODD_ADDRESSES, "re": addresses.ADDRESS_RE},
        ).all()
        trimmed = conn.execute(
            sa.text("SELECT sync.trim_space(:s)"),
            {"s": f"{addresses.WHITESPACE}x{addresses.WHITESPACE}"},
        ).scalar()
    assert trimmed == "x"  # the SQL trim set is Python's whitespace
    for r in rows:
        assert (r.clean, r.key) == (addresses.clean(r.v), addresses.key(r.v)), r.v
        assert r.ok == addresses.well_formed(r.clean), r.v


# -- GX is imported in the background at the run's start; a check never builds it twice --------


def test_warm_up_builds_every_suite_once_while_a_check_waits():
    expectations._new_context.cache_clear()
    expectations._new_validation.cache_clear()
    thread = expectations.warm_up()
    context = expectations._context()  # a check arriving early: waits, or builds it first
    validations = {
        (name, strict): expectations._validation(name, strict)
        for name in expectations.SAMPLE_COLUMNS
        for strict in (True, False)
        if strict or name in expectations.ADVISORY_SUITES
    }
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert expectations._context() is context
    expected = {f"{n}{'' if s else '_advisory'}" for n, s in validations}
    assert {v.name for v in context.validation_definitions.all()} == expected
    assert {s.name for s in context.suites.all()} == expected
    for (name, strict), validation in validations.items():
        assert expectations._validation(name, strict) is validation
