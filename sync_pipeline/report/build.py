"""The sync report: what a (test) sync changes, who is left out and why, and warnings.

Built from sync.diffs (exactly what a sync would apply) and sync.snapshot_users; rendered as
Dagster markdown, and as an email (plain text + HTML, every change attached as CSV) for the
tenant's admin. No Dagster imports here.

A first load of a large tenant plans over a million changes (a 100k-user tenant: 1.4 M, a
420 MB message built in 3.6 GB of memory when the report held them all). So the report
holds only the first changes it shows; the CSV is streamed from the database to a temporary
file, attached as it is when small, zipped when larger, and when even the zip is over
`SYNC_PIPELINE_REPORT_MAX_MB` (default 10) the attachment carries every user, group and
manager change and the memberships counted per group; `sync-pipeline report` writes the
complete CSV of any run.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import IO, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from sync_pipeline.core import config, db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.explain import lookup as explain
from sync_pipeline.load import diff, gate
from sync_pipeline.load.seats import Seats, from_counts
from sync_pipeline.registry import runs
from sync_pipeline.report import mail
from sync_pipeline.transform import unreadable

SHOWN = 200  # changes and exclusions shown inline; the CSV carries them all
CSV_PLAIN_MAX = 2 * 2**20  # a CSV up to this size is attached as it is, a larger one zipped
CSV_HEADER = ("entity", "action", "key", "who_or_what", "before", "after")


def max_attachment_bytes() -> int:
    """The largest attachment the report emails (`SYNC_PIPELINE_REPORT_MAX_MB`, default 10:
    under the common mail-server limits once base64 has grown it by a third)."""
    raw = config.report_max_mb()
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError(
            f"SYNC_PIPELINE_REPORT_MAX_MB={raw!r} is not a positive number of megabytes; "
            "unset it for the default of 10"
        )
    return int(value * 2**20)


@dataclass(frozen=True)
class Attachment:
    filename: str
    payload: bytes
    mime: str
    rows: int  # changes in the run
    complete: bool  # False: memberships counted per group, not listed one by one


@dataclass
class Report:
    tenant: str
    run_id: int
    dry_run: bool
    generated_at: dt.datetime
    counts: dict[str, int]
    included: int
    excluded_by_reason: dict[str, int]
    changes: list[dict[str, Any]]  # the first SHOWN, in the report's order
    excluded: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    attachment: Attachment | None = None
    # imported users whose manager link was cut to break a manager cycle, each in a sentence
    manager_notes: list[str] = field(default_factory=list)
    # groups that are odd but legal in Entra ID (a blank name, nesting in a cycle), each in a
    # sentence: nothing was left out, but the admin may want to tidy them
    group_notes: list[str] = field(default_factory=list)
    # what the deactivation gate withheld (pending, held, protected, rejected, the app's own
    # decisions), one sentence per change, and how many there were in all
    withheld: list[str] = field(default_factory=list)
    withheld_total: int = 0
    # active app users before the run, and after it (load/seats.py)
    seats: Seats = field(default_factory=lambda: Seats(0, 0, 0))

    @property
    def total_changes(self) -> int:
        return sum(self.counts.values())


def build(conn: sa.Connection, settings: TenantSettings, run_id: int, *, dry_run: bool) -> Report:
    params = {"tenant": settings.slug, "run_id": run_id}
    counts = {k: int(v) for k, v in conn.execute(db.q("load/diff_counts"), params).all()}
    summary = conn.execute(db.q("report/summary"), params).one()
    head = params | {"limit": SHOWN, "memberships": True}
    changes = [dict(r._mapping) for r in conn.execute(db.q("report/changes"), head)]
    excluded = [dict(r._mapping) for r in conn.execute(db.q("report/excluded"), params)]
    manager_notes = [
        f"{r.user_principal_name or r.graph_id}: manager not imported: manager cycle "
        f"{r.cycle} → {r.email}; the link from {r.email} was cut (rule: {explain.CYCLE_RULE})"
        for r in conn.execute(db.q("report/manager_cuts"), params)
    ]
    group_notes = [
        _GROUP_NOTES[r.reason].format(id=r.graph_id, name=r.detail)
        for r in conn.execute(db.q("checks/snapshot_odd_rows"), params)
        if r.kind == "group" and r.reason in _GROUP_NOTES
    ]
    active = conn.execute(db.q("load/active_users"), params).scalar_one()
    # the active users when the diff was planned: the same as now in a test sync, and the
    # count before the apply for a run that applied
    planned = runs.planned(conn, run_id) or {}
    active_before = int(planned.get("active_users", active))
    exceeded, message = diff.safety_check(
        {"user_deactivate": counts.get("user_deactivate", 0), "active_users": active}, settings
    )
    warnings = [message] if exceeded else []
    gated = gate.counts(conn, settings.slug, run_id)
    held = diff.held_message(gated, settings)
    warnings += [held] if held else []
    withheld = [
        gate.line(w, settings) for w in gate.run_rows(conn, settings.slug, run_id, limit=SHOWN)
    ]
    withheld_total = sum(v for k, v in gated.items() if not k.endswith("_with_person"))
    withheld_total -= gated["gate_deactivate_approved"] + gated["gate_deactivate_allowed"]
    missing = conn.execute(db.q("load/mapping_missing"), params).all()
    warnings += [
        f"group {graph_id} is mapped to app group {name!r}, which does not exist: "
        "its members are not synced until group_mapping is fixed"
        for graph_id, name in missing
    ]
    # hidden-membership groups Graph refused to list: the permission to grant
    warnings += [g.sentence for g in unreadable.listed(conn, settings.slug)]
    return Report(
        tenant=settings.slug,
        run_id=run_id,
        dry_run=dry_run,
        generated_at=dt.datetime.now(ZoneInfo(settings.timezone)),
        counts=counts,
        included=summary.included,
        excluded_by_reason=dict(Counter(e["reason"] for e in excluded)),
        changes=changes,
        excluded=excluded,
        warnings=warnings,
        withheld=withheld,
        withheld_total=withheld_total,
        attachment=changes_attachment(conn, settings.slug, run_id),
        manager_notes=manager_notes,
        group_notes=group_notes,
        seats=from_counts(counts, active_before),
    )


_GROUP_NOTES = {
    "blank_group_name": "group {id} has a blank name in Entra ID: it is imported under its "
    "Graph id until it is named there",
    "nesting_cycle": "group {name!r} is nested in a cycle (it is, through other groups, a "
    "member of itself): each group of the cycle gets the members of all of them",
}


def reasons_text(excluded: dict[str, Any]) -> str:
    """A left-out person's reasons, a mailbox_type with the type Graph gave (shared, room...)."""
    kind = excluded.get("mailbox_purpose")
    return ", ".join(
        f"{r} ({kind})" if r == "mailbox_type" and kind else r for r in excluded["reasons"]
    )


def _fmt(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _title(report: Report) -> str:
    kind = "Test sync" if report.dry_run else "Sync"
    return f"{kind} report for {report.tenant}"


def _headline(report: Report) -> list[str]:
    when = report.generated_at.strftime("%Y-%m-%d %H:%M %Z")
    verb = "would make" if report.dry_run else "made"
    return [
        f"{_title(report)} — {when} (sync run {report.run_id})",
        f"The sync {verb} {report.total_changes} change(s). "
        f"{report.included} directory users are in scope, {len(report.excluded)} are left out.",
        f"Seats: {report.seats.sentence()}.",
        "This was a dry run: nothing in the app was changed." if report.dry_run else "",
    ]


def markdown(report: Report) -> str:
    lines = [f"**{line}**" if i == 0 else line for i, line in enumerate(_headline(report))]
    lines += ["", "| change | count |", "| --- | ---: |"]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in sorted(report.counts.items())]
    if report.warnings:
        lines += ["", "**Warnings**", *[f"- {w}" for w in report.warnings]]
    if report.withheld:
        lines += ["", f"**Withheld ({report.withheld_total})**"]
        lines += [f"- {w}" for w in report.withheld]
    if report.excluded_by_reason:
        lines += ["", "| left out because | users |", "| --- | ---: |"]
        lines += [f"| {k} | {v} |" for k, v in sorted(report.excluded_by_reason.items())]
    if report.manager_notes:
        lines += ["", "**Managers left out**", *[f"- {n}" for n in report.manager_notes]]
    if report.group_notes:
        lines += ["", "**Groups to look at**", *[f"- {n}" for n in report.group_notes]]
    if report.changes:
        lines += ["", "| entity | action | who / what | before | after |", "|---|---|---|---|---|"]
        lines += [
            f"| {c['entity']} | {c['action']} | {c['label'] or c['key']} | "
            f"{_fmt(c['before'])} | {_fmt(c['after'])} |".replace("\n", " ")
            for c in report.changes[:SHOWN]
        ]
        if report.total_changes > len(report.changes):
            lines.append(f"\n… {report.total_changes - len(report.changes)} more: {_where(report)}")
    return "\n".join(lines)


def write_changes_csv(
    conn: sa.Connection, tenant: str, run_id: int, out: IO[bytes], *, memberships: bool = True
) -> int:
    """Stream one run's changes as CSV (UTF-8) into a binary file; returns the rows written."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(CSV_HEADER)
    params = {"tenant": tenant, "run_id": run_id, "memberships": memberships, "limit": None}
    rows = conn.execution_options(stream_results=True, yield_per=5000).execute(
        db.q("report/changes"), params
    )
    n = 0
    for c in rows:
        writer.writerow((c.entity, c.action, c.key, c.label, _fmt(c.before), _fmt(c.after)))
        n += 1
    text.flush()
    text.detach()  # leave `out` open for the caller
    return n


def _write_group_counts(conn: sa.Connection, tenant: str, run_id: int, out: IO[bytes]) -> None:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(("app_group", "memberships_added", "memberships_removed"))
    params = {"tenant": tenant, "run_id": run_id}
    writer.writerows(conn.execute(db.q("report/memberships_by_group"), params))
    text.flush()
    text.detach()


def _zip(files: Mapping[str, IO[bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, f in files.items():
            f.seek(0)
            with zf.open(name, "w") as dst:
                shutil.copyfileobj(f, dst, 2**20)
    return buf.getvalue()


def changes_attachment(conn: sa.Connection, tenant: str, run_id: int) -> Attachment:
    """Every change of the run as CSV: as it is up to CSV_PLAIN_MAX, else zipped; when the zip
    is over `max_attachment_bytes()`, every change but the memberships plus the memberships
    counted per group (`complete` False), and when even that is over, the counts alone."""
    stem = f"{tenant}-run-{run_id}-changes"
    limit = max_attachment_bytes()
    with tempfile.TemporaryFile() as full:
        rows = write_changes_csv(conn, tenant, run_id, full)
        if full.tell() <= min(CSV_PLAIN_MAX, limit):
            full.seek(0)
            return Attachment(f"{stem}.csv", full.read(), "text/csv", rows, True)
        packed = _zip({f"{stem}.csv": full})
    if len(packed) <= limit:
        return Attachment(f"{stem}.zip", packed, "application/zip", rows, True)
    with tempfile.TemporaryFile() as others, tempfile.TemporaryFile() as groups:
        write_changes_csv(conn, tenant, run_id, others, memberships=False)
        _write_group_counts(conn, tenant, run_id, groups)
        files = {
            f"{stem}-users-groups-managers.csv": others,
            f"{stem}-memberships-by-group.csv": groups,
        }
        packed = _zip(files)
        if len(packed) > limit:  # even the user changes are too many: the counts alone
            packed = _zip({f"{stem}-memberships-by-group.csv": groups})
    return Attachment(f"{stem}-summary.zip", packed, "application/zip", rows, False)


def _where(report: Report) -> str:
    """Where the reader finds every change, in words."""
    a = report.attachment
    if a is None:
        return f"sync.diffs, run {report.run_id}."
    if a.complete:
        return f"every change is in the attached {'CSV' if a.mime == 'text/csv' else 'zipped CSV'}."
    return (
        f"the {a.rows} changes are too many to email, so the attached zip counts the membership "
        "changes per group and, when they fit, lists every user, group and manager change. "
        "The complete "
        f"list: `sync-pipeline report {report.tenant} {report.run_id} --csv FILE` (ask your "
        "sync operator)."
    )


def text(report: Report) -> str:
    lines = [line for line in _headline(report) if line] + ["", "Changes:"]
    lines += [f"  {k.replace('_', ' ')}: {v}" for k, v in sorted(report.counts.items())] or [
        "  none"
    ]
    if report.warnings:
        lines += ["", "Warnings:", *[f"  - {w}" for w in report.warnings]]
    if report.withheld:
        lines += ["", f"Withheld, not changed in the app ({report.withheld_total}):"]
        lines += [f"  - {w}" for w in report.withheld]
    if report.excluded:
        lines += ["", "Left out of the sync:"]
        lines += [f"  {k}: {v}" for k, v in sorted(report.excluded_by_reason.items())]
        lines += [
            f"  - {e['user_principal_name'] or e['graph_id']}: {reasons_text(e)}"
            for e in report.excluded[:SHOWN]
        ]
    if report.manager_notes:
        lines += ["", "Managers left out:", *[f"  - {n}" for n in report.manager_notes]]
    if report.group_notes:
        lines += ["", "Groups to look at:", *[f"  - {n}" for n in report.group_notes]]
    lines += ["", _where(report)[0].upper() + _where(report)[1:]]
    return "\n".join(lines)


def _html(report: Report) -> str:
    esc = html.escape
    head = "".join(f"<p>{esc(line)}</p>" for line in _headline(report) if line)
    counts = "".join(
        f"<tr><td>{esc(k.replace('_', ' '))}</td><td align='right'>{v}</td></tr>"
        for k, v in sorted(report.counts.items())
    )
    warn = "".join(f"<li>{esc(w)}</li>" for w in report.warnings)
    warn += "".join(f"<li>withheld: {esc(w)}</li>" for w in report.withheld)
    cuts = "".join(f"<li>{esc(n)}</li>" for n in report.manager_notes)
    odd_groups = "".join(f"<li>{esc(n)}</li>" for n in report.group_notes)
    changes = "".join(
        f"<tr><td>{esc(c['entity'])}</td><td>{esc(c['action'])}</td>"
        f"<td>{esc(str(c['label'] or c['key']))}</td><td>{esc(_fmt(c['before']))}</td>"
        f"<td>{esc(_fmt(c['after']))}</td></tr>"
        for c in report.changes[:SHOWN]
    )
    excluded = "".join(
        f"<tr><td>{esc(str(e['user_principal_name'] or e['graph_id']))}</td>"
        f"<td>{esc(reasons_text(e))}</td></tr>"
        for e in report.excluded[:SHOWN]
    )
    return (
        f"<html><body><h2>{esc(_title(report))}</h2>{head}"
        f"<h3>Changes</h3><table border='1' cellpadding='4'>{counts}</table>"
        + (f"<h3>Warnings</h3><ul>{warn}</ul>" if warn else "")
        + (
            f"<h3>Changes (the first {len(report.changes)})</h3><p>{esc(_where(report))}</p>"
            "<table border='1' "
            f"cellpadding='4'><tr><th>entity</th><th>action</th><th>who / what</th>"
            f"<th>before</th><th>after</th></tr>{changes}</table>"
            if changes
            else ""
        )
        + (
            "<h3>Left out of the sync</h3><table border='1' cellpadding='4'>"
            f"<tr><th>user</th><th>why</th></tr>{excluded}</table>"
            if excluded
            else ""
        )
        + (f"<h3>Managers left out</h3><ul>{cuts}</ul>" if cuts else "")
        + (f"<h3>Groups to look at</h3><ul>{odd_groups}</ul>" if odd_groups else "")
        + "</body></html>"
    )


def email(report: Report, to: str) -> EmailMessage:
    subject = f"{_title(report)}: {report.total_changes} change(s)"
    if report.warnings:
        subject += f", {len(report.warnings)} warning(s)"
    return mail.build(
        to=to,
        subject=subject,
        text=text(report),
        html=_html(report),
        attachments=[(a.filename, a.payload, a.mime) for a in [report.attachment] if a],
    )


def planned_run(conn: sa.Connection, tenant: str, run_id: int) -> sa.Row[Any] | None:
    """Run run_id of the tenant (id, dry_run, status, planned counts) with `rows`, how many of
    its planned changes sync.diffs still holds; None when the tenant has no such run."""
    return conn.execute(db.q("report/run_planned"), {"tenant": tenant, "run_id": run_id}).first()
