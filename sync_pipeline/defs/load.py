"""Load: the diff (snapshot vs app.*) and its apply, in one transaction under the tenant lock."""

import datetime as dt
import time

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from sync_pipeline.checks import scope
from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.core.textfiles import markdown_cell
from sync_pipeline.defs import metadata
from sync_pipeline.defs.partitions import tenant_partitions
from sync_pipeline.defs.resources import Database
from sync_pipeline.defs.stopping import stop_if_asked, test_pause
from sync_pipeline.defs.transform import SNAPSHOT_GROUPS, SNAPSHOT_MEMBERSHIPS, SNAPSHOT_USERS
from sync_pipeline.extract import person as one_person
from sync_pipeline.load import diff, gate, runmode, seats
from sync_pipeline.registry import intervals, runs, schedule
from sync_pipeline.report import alerts, mail
from sync_pipeline.report import build as report

SNAPSHOTS = [SNAPSHOT_USERS, SNAPSHOT_GROUPS, SNAPSHOT_MEMBERSHIPS]


class ApplyConfig(dg.Config):
    allow_mass_deactivation: bool = Field(
        default=False,
        description="Apply even when the deactivations exceed the tenant's safety limit.",
    )


def mass_deactivation_allowed(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, settings: TenantSettings
) -> tuple[bool, str]:
    """Whether this run lifts the safety limit, and what to record: allow_mass_deactivation
    in its run config, honoured for a run the CLI executes in its own process (no remote
    origin) or where the tenant allows it from the UI (runmode.mass_deactivation_refusal);
    a refusal is logged as a warning and said in the metadata."""
    run = context.run
    refusal = runmode.mass_deactivation_refusal(
        run.run_config,
        launched_in_process=run.remote_job_origin is None,
        allowed_from_ui=settings.allow_mass_deactivation_from_ui,
    )
    if refusal is not None:
        context.log.warning(f"tenant {settings.slug}: {refusal}")
        return False, f"refused: {refusal}"
    asked = runmode.asks_mass_deactivation(run.run_config)
    return asked, "allowed by the operator" if asked else "not asked"


def is_dry_run(context: dg.AssetExecutionContext) -> bool:
    """Whether this run is a test sync (`sync_pipeline.load.runmode`)."""
    return runmode.is_dry_run(context.job_def.name)


def _ints(counts: dict[str, int]) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(counts.items())}


def next_auto_sync(settings: TenantSettings) -> str:
    """The tenant's next daily sync (and intraday one), shown with each partition's diff."""
    if not settings.auto_sync:
        return "off (auto_sync is false)"
    now = dt.datetime.now(dt.UTC)
    at = schedule.next_slot(settings, now)
    text = f"{at:%Y-%m-%d %H:%M %Z} ({at.astimezone(dt.UTC):%H:%M} UTC)"
    interval = intervals.next_interval_slot(settings, now)
    if interval is not None:
        text += f"; intraday every {settings.sync_interval} min, next {interval:%H:%M} UTC"
    return text


def change_table(rows: list[dict]) -> dg.TableMetadataValue:
    """The first changes of the diff as a table (the markdown `changes` keeps the counts)."""
    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in diff.DIFF_COLUMNS]),
    )


@dg.asset(partitions_def=tenant_partitions, group_name="load", deps=SNAPSHOTS, kinds={"postgres"})
def sync_diff(context: dg.AssetExecutionContext, database: Database) -> dg.MaterializeResult:
    """The changes that would make app.* match the snapshot: user creates, adoptions,
    updates, reactivations and deactivations, group, membership and manager changes."""
    stop_if_asked(context)
    tenant, started = context.partition_key, time.monotonic()
    settings = database.tenant_settings(tenant)
    with database.engine().begin() as conn:
        run_id = runs.ensure(conn, tenant, context.run.run_id, dry_run=is_dry_run(context))
        test_pause("diff")
        person = person_id(conn, tenant, context, run_id)
        # weekly (full_verification_days): the incremental diff is compared with a whole one
        # (not in a run of one person, which diffs nobody else)
        verification = scope.decide(conn, settings, "diff_rebuild", "verify")
        allowed, mass = mass_deactivation_allowed(context, settings)
        counts, path = diff.compute_diff_path(
            conn,
            tenant,
            run_id,
            settings,
            verify=verification.whole and person is None,
            allow_mass_deactivation=allowed,
            person=person,
        )
        if person is None:
            scope.record(conn, tenant, verification, path.verified != "mismatch", commit=False)
        exceeded, message = diff.safety_check(counts, settings)
        held = diff.held_message(counts, settings)
        withheld = gate.run_rows(conn, tenant, run_id, limit=50)
        table = diff.diff_markdown(conn, tenant, run_id)
        rows = diff.diff_rows(conn, tenant, run_id)
    if path.verified == "mismatch":
        # the whole diff is kept (a test sync reports it) but not applied in this run; the
        # next diff is whole: the incremental path broke an invariant of ours
        raise metadata.verification_failure(
            tenant,
            "change(s) where the incremental diff and a whole one disagree",
            path.mismatches,
            path.mismatch_count,
            "The whole diff was kept (a test sync reports it); the next sync computes it whole.",
            {**path.metadata(), **verification.facts()},
        )
    if exceeded:
        context.log.warning(message)
    for label in path.deferred:
        context.log.warning(
            f"tenant {tenant}: {label}: the group is not in the app yet; the next sync of the "
            "whole tenant creates it and adds the person"
        )
    if held:
        context.log.warning(held)
    active = seats.from_counts(counts)
    context.log.info(f"tenant {tenant}: seats {active.sentence()}")
    return dg.MaterializeResult(
        metadata={
            **_ints(counts),
            # plain ints, so the UI plots the billable active users over runs
            **active.metadata(),
            **path.metadata(),
            **{f"diff_{k}": v for k, v in verification.facts().items()},
            "sync_run_id": run_id,
            **({"person_deferred": "; ".join(path.deferred)} if person else {}),
            "within_safety_limit": not exceeded,
            "mass_deactivation": mass,
            "withheld": held or "nothing held",
            "withheld_list": dg.MetadataValue.md(_withheld_table(withheld, settings)),
            "next_auto_sync": next_auto_sync(settings),
            "changes": dg.MetadataValue.md(table),
            "change_list": change_table(rows),
            "seconds": round(time.monotonic() - started, 3),
        }
    )


@dg.asset(partitions_def=tenant_partitions, group_name="load", deps=[sync_diff], kinds={"postgres"})
def app_directory(
    context: dg.AssetExecutionContext, config: ApplyConfig, database: Database
) -> dg.MaterializeResult:
    """The app's users, groups and memberships for the tenant (app.*), brought in line with
    the snapshot in one transaction: deactivated, never deleted."""
    stop_if_asked(context)  # the last boundary: once the apply starts, it commits whole
    tenant, started = context.partition_key, time.monotonic()
    settings = database.tenant_settings(tenant)
    with database.engine().begin() as conn, db.tenant_lock(conn, tenant):
        run_id = runs.ensure(conn, tenant, context.run.run_id, dry_run=False)
        test_pause("apply")
        # The diff sync_diff wrote in this run (and the blocking checks passed) is applied as
        # it is; computed here only when this run has none.
        allowed, mass = mass_deactivation_allowed(context, settings)
        planned, computed = diff.planned_diff(
            conn,
            tenant,
            run_id,
            settings,
            allow_mass_deactivation=allowed,
        )
        context.log.info(
            f"tenant {tenant}: applying the diff "
            + ("computed now" if computed else "planned and checked earlier in this run")
        )
        exceeded, message = diff.safety_check(planned, settings)
        if exceeded and not allowed:
            raise dg.Failure(
                message,
                allow_retries=False,
                metadata=_ints(planned),
            )
        applied = diff.apply_diff(
            conn, tenant, run_id, person=person_id(conn, tenant, context, run_id)
        )
        runs.finish(conn, run_id, "success", counts=_ints(applied))
        table = diff.diff_markdown(conn, tenant, run_id)
        rows = diff.diff_rows(conn, tenant, run_id)
    context.log.info(f"tenant {tenant}: applied {applied}")
    notified = _notify_held(context, database, settings)
    return dg.MaterializeResult(
        metadata={
            **_ints(applied),
            "sync_run_id": run_id,
            "diff_reused": not computed,
            "mass_deactivation": mass,
            "held_newly_notified": notified,
            "changes": dg.MetadataValue.md(table),
            "change_list": change_table(rows),
            "seconds": round(time.monotonic() - started, 3),
        }
    )


def person_id(
    conn: sa.Connection, tenant: str, context: dg.AssetExecutionContext, run_id: int
) -> str | None:
    """The Graph id of the one person this run syncs (`sync --user`), None for the tenant;
    the run's sync.runs row says whom it was for."""
    who = runmode.person(context.run.run_config)
    if who is None:
        return None
    graph_id = one_person.staged_id(conn, tenant, who)
    if graph_id is None:  # the run's extraction staged them: an invariant of ours broke
        raise dg.Failure(f"tenant {tenant}: {who!r} is not staged after their read")
    runs.set_person(conn, run_id, who)
    return graph_id


def _withheld_table(rows: list[gate.Withheld], settings: TenantSettings) -> str:
    """The first changes the gate withheld in this run, for the UI (pending people included)."""
    if not rows:
        return "Nothing withheld."
    lines = ["| change | who | status | why |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {w.kind.replace('_', ' ')} | {markdown_cell(w.email or w.label)}"
        + (f" in {markdown_cell(w.group)}" if w.group else "")
        + f" | {w.status} | {markdown_cell(gate.sentence(w, settings.timezone, settings))} |"
        for w in rows
    ]
    return "\n".join(lines)


def _notify_held(
    context: dg.AssetExecutionContext, database: Database, settings: TenantSettings
) -> int:
    """One email to the tenant's admin listing what this apply newly held for a decision
    (load/gate.py); marked notified only once it went out. Returns how many it listed."""
    if not settings.admin_email:
        return 0
    with database.engine().begin() as conn:
        sentences = gate.unnotified(conn, settings)
        if sentences:
            where = mail.send(alerts.held_notice(settings.slug, sentences, settings.admin_email))
            context.log.info(
                f"tenant {settings.slug}: {len(sentences)} held change(s) emailed to "
                f"{settings.admin_email} via {where}"
            )
    return len(sentences)


@dg.asset(partitions_def=tenant_partitions, group_name="report", deps=[sync_diff], kinds={"email"})
def test_sync_report(context: dg.AssetExecutionContext, database: Database) -> dg.MaterializeResult:
    """The test sync's report — every change a sync would make, who is left out and why,
    warnings such as the safety limit — emailed to the tenant's admin; app.* untouched."""
    stop_if_asked(context)
    tenant = context.partition_key
    settings = database.tenant_settings(tenant)
    with database.engine().begin() as conn:
        run_id = runs.ensure(conn, tenant, context.run.run_id, dry_run=True)
        built = report.build(conn, settings, run_id, dry_run=True)
    sent_to, report_file = "", ""
    if settings.admin_email:
        where = mail.send(report.email(built, settings.admin_email))
        sent_to = f"{settings.admin_email} via {where}"
        if not where.startswith("smtp://"):  # no SMTP configured: an .eml in the outbox
            report_file = where
        context.log.info(f"test sync report for {tenant} sent to {sent_to}")
    else:
        context.log.warning(f"tenant {tenant} has no admin_email: the report was not emailed")
    with database.engine().begin() as conn:
        runs.finish(conn, run_id, "success", counts=built.counts)
    return dg.MaterializeResult(
        metadata={
            "sync_run_id": run_id,
            "changes_total": built.total_changes,
            "users_in_scope": built.included,
            "users_left_out": len(built.excluded),
            "warnings": len(built.warnings),
            "sent_to": sent_to or "not sent (no admin_email)",
            **({"report_file": dg.MetadataValue.path(report_file)} if report_file else {}),
            "report": dg.MetadataValue.md(report.markdown(built)),
        }
    )


load_assets = [sync_diff, app_directory, test_sync_report]
