"""`explain`: why a person is (not) synced, for every reason code, against real Postgres."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipeline.cli import main
from sync_pipeline.explain import lookup as explain
from sync_pipeline.registry import tenants
from sync_pipeline.transform import rules
from sync_pipeline_tests.support.rows import group, make_settings, stage, user

STAGED = {
    "users": [
        user(
            "ok",
            "Ok.Person@Example.com",
            mail="ok.mail@example.com",
            proxies=["SMTP:ok.primary@example.com", "smtp:OK.Alias@example.com"],
            display_name="Ok Person",
        ),
        user("boss", "boss@example.com", display_name="The Boss"),
        user("denied", "ceo@example.com"),
        user("shared", "shared@example.com", licensed=False),
        user("off", "off@example.com", enabled=False),
        user(
            "guest", "guest_partner.com#EXT#@example.com", mail="g@partner.com", user_type="Guest"
        ),
        user("outside", "outside@example.com"),
        user("nomail", None, mail="nomail@example.com"),
        user("dup", "OK.PERSON@example.com", created="2030-01-01T00:00:00Z"),
        user("lonely", "lonely@example.com"),
        user("stranger", "stranger@example.com", enabled=False, licensed=False),
    ],
    "groups": [group("scope", name="Everyone in scope"), group("team", "microsoft365", "Team")],
    "members": {
        "scope": ["ok", "boss", "denied", "shared", "off", "guest", "nomail", "dup", "lonely"],
        "team": ["ok"],
    },
    "managers": {"ok": "boss", "lonely": "off", "boss": "ghost"},
}
SETTINGS = {
    "user_scope": "selected_groups",
    "scope_group_ids": ["scope"],
    "email_deny_list": ["CEO@example.com"],
    "exclude_unlicensed": True,
    "import_managers": True,
    "group_mapping_enabled": True,
    "group_mapping": {"team": "Staff"},
}


@pytest.fixture
def tenant(engine, tenant_slug):
    settings = make_settings(tenant_slug, **SETTINGS)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO app.groups (tenant, name, source) VALUES (:t, 'Staff', 'app')"),
            {"t": tenant_slug},
        )
        tenants.save(conn, settings)
        stage(conn, tenant_slug, **STAGED)
        conn.execute(
            sa.text(
                "INSERT INTO staging.extractions (tenant, entity, rows, requests)"
                " VALUES (:t, 'users', 10, 1)"
            ),
            {"t": tenant_slug},
        )
        rules.build_snapshot(conn, settings)
    return settings


def one(engine, settings, query: str) -> explain.Explanation:
    with engine.connect() as conn:
        found = explain.lookup(conn, settings, query)
    assert len(found) == 1, [x.graph_id for x in found]
    return found[0]


@pytest.mark.parametrize(
    ("query", "graph_id"),
    [
        ("ok.person@example.com", "ok"),  # UPN, other case
        ("  OK.MAIL@example.com ", "ok"),  # mail, trimmed
        ("ok.primary@EXAMPLE.com", "ok"),  # primary SMTP
        ("ok.alias@example.com", "ok"),  # secondary proxy address
        ("g@partner.com", "guest"),
        ("nomail", "nomail"),  # Graph id
    ],
)
def test_matches_by_upn_mail_proxy_and_id(engine, tenant, query, graph_id):
    with engine.connect() as conn:
        found = explain.lookup(conn, tenant, query)
    assert found[0].graph_id == graph_id  # the included user first (a duplicate may follow)


def test_included_person_with_address_groups_and_manager(engine, tenant):
    with engine.connect() as conn:
        found = explain.lookup(conn, tenant, "Ok.Person@Example.com")
    ok, dup = found  # the duplicate resolves to the same address: both are shown
    assert (ok.graph_id, ok.included, ok.email, ok.reasons) == (
        "ok",
        True,
        "Ok.Person@Example.com",
        [],
    )
    assert [g.label for g in ok.groups] == [
        "Everyone in scope",
        "Staff (app group, mapped from Team)",
    ]
    assert ok.manager == "The Boss <boss@example.com>"
    assert dup.graph_id == "dup" and dup.reasons == ["duplicate_email"]
    assert dup.winner["graph_id"] == "ok"
    assert "Ok Person <Ok.Person@Example.com> (Graph id ok)" in dup.sentences[0]


@pytest.mark.parametrize(
    ("query", "reason", "words"),
    [
        ("ceo@example.com", "deny_list", ["'CEO@example.com'"]),
        ("shared@example.com", "unlicensed", ["exclude_unlicensed"]),
        ("off@example.com", "disabled", ["include_disabled"]),
        ("g@partner.com", "guest", ["include_guests", "Guest"]),
        ("outside@example.com", "out_of_scope", ["'Everyone in scope'", "scope_group_ids"]),
        ("nomail@example.com", "no_email", ["email_method upn", "UPN None"]),
    ],
)
def test_every_reason_code_is_explained(engine, tenant, query, reason, words):
    x = one(engine, tenant, query)
    assert not x.included and x.reasons[0] == reason
    assert x.sentences[0].startswith(f"{reason}:")
    for word in words:
        assert word in x.sentences[0]


def test_every_reason_of_a_user_is_listed(engine, tenant):
    x = one(engine, tenant, "STRANGER@example.com")
    assert x.reasons == ["out_of_scope", "disabled", "unlicensed"]
    assert [s.split(":")[0] for s in x.sentences] == x.reasons


def test_manager_left_out_is_said(engine, tenant):
    lonely = one(engine, tenant, "lonely@example.com")
    assert lonely.included and lonely.manager is None
    assert "off@example.com" in lonely.manager_sentence and "disabled" in lonely.manager_sentence
    boss = one(engine, tenant, "boss@example.com")
    assert "ghost" in boss.manager_sentence and "not among" in boss.manager_sentence


def test_the_command_fits_one_screen(engine, tenant, database_url):
    runner = CliRunner()
    result = runner.invoke(main, ["explain", tenant.slug, "OK.PERSON@example.com"])
    assert result.exit_code == 0, result.output
    assert "will be synced" in result.output and "will not be synced" in result.output
    assert "duplicate_email" in result.output and "Staff (app group" in result.output
    assert len(result.output.splitlines()) < 40
    missing = runner.invoke(main, ["explain", tenant.slug, "nobody@example.com"])
    assert missing.exit_code == 2 and "no user matches 'nobody@example.com'" in missing.output
    unknown = runner.invoke(main, ["explain", "no-such-tenant", "x@y.com"])
    assert unknown.exit_code == 2 and "no tenant 'no-such-tenant'" in unknown.output


def test_a_cut_manager_cycle_names_the_cycle_and_the_rule(engine, tenant_slug):
    """Ann -> Bob -> Cat -> Ann: the link from the lowest id (a-ann) is cut; explain says so
    for her, and Bob and Cat keep their managers."""
    settings = make_settings(tenant_slug, import_managers=True)
    people = [
        user("a-ann", "ann@example.com", display_name="Ann"),
        user("b-bob", "bob@example.com", display_name="Bob"),
        user("c-cat", "cat@example.com", display_name="Cat"),
        user("d-dan", "\ufb01dan@example.com", display_name="Dan"),  # a ligature: 'fidan'
    ]
    managers = {"a-ann": "b-bob", "b-bob": "c-cat", "c-cat": "a-ann", "d-dan": "a-ann"}
    with engine.begin() as conn:
        tenants.save(conn, settings)
        stage(conn, tenant_slug, users=people, managers=managers)
        counts = rules.build_snapshot(conn, settings)
    assert counts["managers_cut_cycle"] == 1 and counts["managers_set"] == 3
    ann = one(engine, settings, "ann@example.com")
    assert ann.included and ann.manager is None
    assert ann.manager_sentence == (
        "none in the app: manager not imported: manager cycle Ann <ann@example.com> → "
        "Bob <bob@example.com> → Cat <cat@example.com> → Ann <ann@example.com>; the link "
        "from Ann <ann@example.com> to Bob <bob@example.com> was cut (rule: in a manager "
        "cycle the member with the lowest Graph id keeps no manager, the others keep "
        "theirs). Fix the managers in Entra ID to set one."
    )
    assert one(engine, settings, "bob@example.com").manager == "Cat <cat@example.com>"
    # found by its normalised address, stored in its clean form
    dan = one(engine, settings, "FIDAN@example.com")
    assert dan.email == "fidan@example.com" and dan.manager == "Ann <ann@example.com>"


HOSTILE = "[/]Eve [bold]\x1b[31mRed\x1b]0;owned\x07 \u202eTxet\u202c Åsa\\"


def test_hostile_names_are_printed_as_written_and_inert(engine, tenant_slug, database_url):
    """A display name holding rich markup, terminal escape sequences and a bidi override:
    `explain` and `history` print it as text (markup was read as markup and crashed both),
    with no control character reaching the terminal, and real Unicode kept."""
    settings = make_settings(tenant_slug)
    with engine.begin() as conn:
        tenants.save(conn, settings)
        stage(
            conn,
            tenant_slug,
            users=[user("eve", "eve@example.com", display_name=HOSTILE)],
            groups=[],
            members={},
            managers={},
        )
        conn.execute(
            sa.text(
                "INSERT INTO staging.extractions (tenant, entity, rows, requests)"
                " VALUES (:t, 'users', 1, 1)"
            ),
            {"t": tenant_slug},
        )
        rules.build_snapshot(conn, settings)
        run_id = conn.execute(
            sa.text("INSERT INTO sync.runs (tenant, status) VALUES (:t, 'success') RETURNING id"),
            {"t": tenant_slug},
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO sync.changes (tenant, run_id, entity, action, key, label, after)"
                " VALUES (:t, :r, 'user', 'create', 'eve', :label, CAST(:after AS jsonb))"
            ),
            {"t": tenant_slug, "r": run_id, "label": HOSTILE, "after": '{"display_name": "[/]"}'},
        )
    runner = CliRunner()
    for args in (["explain", tenant_slug, "eve@example.com"], ["history", tenant_slug]):
        result = runner.invoke(main, args, env={"COLUMNS": "300"})
        assert result.exit_code == 0, (args, result.output, result.exception)
        out = result.output
        # (a table folds a long cell over lines: its pieces)
        assert all(piece in out for piece in ("[/]Eve", "[bold]", "Åsa")), out
        assert not any(c in out for c in "\x1b\x07\u202e\u202c"), repr(out)
