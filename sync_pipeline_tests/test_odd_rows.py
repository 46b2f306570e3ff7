"""Odd but legal Graph data never stops a tenant: a 2,000-user generated tenant with the
address oddities that used to stop it at a blocking check (a fullwidth first letter, a
trailing no-break space, an `ﬁ` ligature, each colliding with another user's address once
normalised), an address that is malformed once normalised, the generator's manager ring and
its nesting cycle, synced for real (fake Graph over HTTPS, real Postgres). Everyone else is
synced; the odd rows are left out or repaired with their reasons, and counted by a WARN check.
"""

from __future__ import annotations

import copy
import secrets

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.explain import lookup as explain
from sync_pipeline.fakegraph import bundled_tenant, generate_tenant
from sync_pipeline.report import build as report
from sync_pipeline_tests.support.fakegraph import register_tenant, start_fake
from sync_pipeline_tests.support.pipeline import evaluations, materialise

USERS = 2000
LATE, EARLY = "2025-12-31T00:00:00Z", "2010-01-01T00:00:00Z"


def _fullwidth(c: str) -> str:
    return chr(ord(c) + 0xFEE0)  # a..z, A..Z, 0..9 -> their fullwidth forms


@pytest.fixture(scope="module")
def odd() -> dict:
    """The tenant, and who was made odd how: `twins` maps each odd user to the user whose
    address it collides with and which of the two must win (same rule as case collisions)."""
    doc = generate_tenant(name="odd-rows", users=USERS, seed=5, domain="odd.example")
    ring = _ring(doc)
    users = doc["users"]
    # plain enabled members, away from the generator's own edge cases and its ring
    plain = [
        u
        for u in users[100:400]
        if u["userType"] == "Member" and u["accountEnabled"] and u["id"] not in ring
    ]
    pairs = [(plain[2 * i], plain[2 * i + 1]) for i in range(4)]
    for original, odd_one in pairs:  # the same licences: only the creation time decides
        odd_one["assignedLicenses"] = copy.deepcopy(original["assignedLicenses"])
        odd_one["mail"], odd_one["proxyAddresses"] = None, []
    (o1, fullwidth), (o2, padded), (o3, ligature), (_, malformed) = pairs
    upn = o1["userPrincipalName"]
    fullwidth["userPrincipalName"] = _fullwidth(upn[0].upper()) + upn[1:]
    fullwidth["createdDateTime"] = LATE
    # the padded twin is the older account, so it wins and the original is left out
    padded["userPrincipalName"] = o2["userPrincipalName"] + "\u00a0"
    padded["createdDateTime"] = EARLY
    o3["userPrincipalName"] = "fi" + o3["userPrincipalName"]
    ligature["userPrincipalName"] = "\ufb01" + o3["userPrincipalName"][2:]
    ligature["createdDateTime"] = LATE
    malformed["userPrincipalName"] = "no\u00a0break@odd.example"  # "no break@..." once NFKC'd
    # a lone trailing no-break space: just trimmed, the user is imported
    lone = plain[10]
    lone["userPrincipalName"] += "\u00a0"
    return {
        "doc": doc,
        "losers": {fullwidth["id"]: o1["id"], o2["id"]: padded["id"], ligature["id"]: o3["id"]},
        "malformed": malformed["id"],
        "lone": (lone["id"], lone["userPrincipalName"].rstrip("\u00a0")),
        "ring": sorted(_ring(doc)),
    }


def _ring(doc: dict) -> set[str]:
    managers = doc["managers"]
    on_ring = set()
    for start in managers:
        at, seen = managers[start], {start}
        while at in managers and at not in seen:
            seen.add(at)
            at = managers[at]
        if at == start:
            on_ring.add(start)
    return on_ring


@pytest.fixture(scope="module")
def synced(odd, engine, database_url, tmp_path_factory):
    doc = odd["doc"]
    fake = start_fake([doc], tmp_path_factory.mktemp("fakegraph-odd"))
    slug = f"odd-{secrets.token_hex(4)}"
    settings = register_tenant(engine, slug, doc, fake, import_managers=True)
    with dg.instance_for_test() as instance:
        result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    yield {"slug": slug, "settings": settings, "result": result}
    fake.stop()


def _snapshot(engine, slug: str) -> dict[str, sa.Row]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT * FROM sync.snapshot_users WHERE tenant = :t"), {"t": slug}
        ).all()
    return {r.graph_id: r for r in rows}


def test_the_tenant_syncs_everyone_else(odd, synced, engine):
    assert odd["ring"] and len(odd["ring"]) == 3
    result = synced["result"]
    assert result.success
    found = evaluations(result)
    # nothing failed with ERROR; the odd rows only warn (here and in the staging check's
    # "userPrincipalName is well-formed", which reads the raw UPNs)
    errors = {n for n, e in found.items() if e.severity == dg.AssetCheckSeverity.ERROR}
    assert all(found[n].passed for n in errors)
    assert {n for n, e in found.items() if not e.passed} == {
        "snapshot_odd_rows",
        "staging_users_valid",
    }
    snapshot = _snapshot(engine, synced["slug"])
    assert len(snapshot) == USERS
    with engine.connect() as conn:
        app = {
            r.external_id: r
            for r in conn.execute(
                sa.text(
                    "SELECT u.external_id, u.email, u.is_active, m.external_id AS manager"
                    " FROM app.users u LEFT JOIN app.users m ON m.id = u.manager_id"
                    " WHERE u.tenant = :t"
                ),
                {"t": synced["slug"]},
            )
        }
    included = {g for g, r in snapshot.items() if r.included}
    assert set(app) == included and all(r.is_active for r in app.values())
    # the odd rows: left out with the right reason, never in the app
    for loser, winner in odd["losers"].items():
        assert (snapshot[loser].included, snapshot[loser].reason) == (False, "duplicate_email")
        assert loser not in app and winner in app
        assert snapshot[loser].email.lower() == app[winner].email.lower()
    assert snapshot[odd["malformed"]].reason == "no_email"
    assert snapshot[odd["malformed"]].email == "no break@odd.example"
    # stored in the clean form: no no-break space, fullwidth or ligature left
    lone, clean = odd["lone"]
    assert app[lone].email == clean
    assert all(r.email.isascii() and r.email == r.email.strip() for r in app.values())
    # the ring: the lowest id keeps no manager, the other two keep theirs
    cut, *kept = odd["ring"]
    managers = odd["doc"]["managers"]
    assert app[cut].manager is None
    assert snapshot[cut].manager_note.startswith(f"manager_cycle:{cut} ")
    assert all(app[u].manager == managers[u] for u in kept)


def test_the_warn_check_counts_the_odd_rows(synced, engine):
    check = evaluations(synced["result"])["snapshot_odd_rows"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    snapshot = _snapshot(engine, synced["slug"])
    meta = {k: v.value for k, v in check.metadata.items()}
    for reason in ("duplicate_email", "no_email"):
        left_out = sum(1 for r in snapshot.values() if not r.included and r.reason == reason)
        assert meta[f"odd_{reason}"] == left_out
    assert meta["odd_duplicate_email"] >= 3  # ours, and the generator's case-only twins
    assert meta["odd_manager_cycle"] == 1
    assert meta["odd_nesting_cycle"] == 2  # Project Falcon and Project Falcon Core
    assert meta["odd_blank_group_name"] == 0


def test_explain_and_the_report_name_the_cycle_rule(odd, synced, engine):
    settings = synced["settings"]
    cut = odd["ring"][0]
    with engine.connect() as conn:
        (x,) = explain.lookup(conn, settings, cut)
        run_id = conn.execute(
            sa.text("SELECT id FROM sync.runs WHERE tenant = :t AND dagster_run_id = :r"),
            {"t": settings.slug, "r": synced["result"].run_id},
        ).scalar_one()
        built = report.build(conn, settings, run_id, dry_run=False)
    assert x.included and x.manager is None
    assert "manager cycle" in x.manager_sentence and explain.CYCLE_RULE in x.manager_sentence
    (note,) = built.manager_notes
    assert explain.CYCLE_RULE in note and "manager cycle" in note
    assert "Managers left out" in report.text(built) and note in report.markdown(built)
    falcon = [n for n in built.group_notes if "nested in a cycle" in n]
    assert len(falcon) == 2 and "Groups to look at" in report.text(built)
    loser = next(iter(odd["losers"]))
    with engine.connect() as conn:
        (dup,) = explain.lookup(conn, settings, loser)
    assert dup.reasons == ["duplicate_email"] and dup.winner is not None
    assert dup.winner["graph_id"] == odd["losers"][loser]


def test_the_demo_tenant_syncs_with_managers_and_explains_its_cycle(engine, database_url, tmp_path):
    """contoso-demo has one manager ring and one nesting cycle (Project Falcon); with
    import_managers on it syncs, and explain names the rule for the user whose link was cut."""
    doc = bundled_tenant("contoso-demo")
    ring = sorted(_ring(doc))
    assert len(ring) == 3
    falcon = {g["displayName"]: g["id"] for g in doc["groups"]}
    a, b = falcon["Project Falcon"], falcon["Project Falcon Core"]
    assert b in doc["members"][a] and a in doc["members"][b]
    fake = start_fake([doc], tmp_path)
    try:
        slug = f"demo-{secrets.token_hex(4)}"
        settings = register_tenant(engine, slug, doc, fake, import_managers=True)
        with dg.instance_for_test() as instance:
            result = materialise(instance, slug, database_url=database_url, raise_on_error=False)
    finally:
        fake.stop()
    assert result.success
    odd = evaluations(result)["snapshot_odd_rows"]
    assert odd.metadata["odd_manager_cycle"].value == 1
    assert odd.metadata["odd_nesting_cycle"].value == 2
    with engine.connect() as conn:
        explained = {x.graph_id: x for u in ring for x in explain.lookup(conn, settings, u)}
    cut, *kept = ring
    assert explain.CYCLE_RULE in explained[cut].manager_sentence
    assert all(explained[u].manager for u in kept)  # the other two keep their managers
