"""The sync report: what a (test) sync changes, who is left out and why, and warnings.

Built from sync.diffs (exactly what a sync would apply) and sync.snapshot_users; rendered as
Dagster markdown, and as an email (plain text + HTML, every change attached as CSV) for the
tenant's admin. No Dagster imports here.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from sync_pipeline import db, diff, mail
from sync_pipeline.settings import TenantSettings

SHOWN = 200  # changes and exclusions shown inline; the CSV carries them all


@dataclass
class Report:
    tenant: str
    run_id: int
    dry_run: bool
    generated_at: dt.datetime
    counts: dict[str, int]
    included: int
    excluded_by_reason: dict[str, int]
    changes: list[dict[str, Any]]
    excluded: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def total_changes(self) -> int:
        return sum(self.counts.values())


def build(conn: sa.Connection, settings: TenantSettings, run_id: int, *, dry_run: bool) -> Report:
    params = {"tenant": settings.slug, "run_id": run_id}
    counts = {k: int(v) for k, v in conn.execute(db.q("load/diff_counts"), params).all()}
    summary = conn.execute(db.q("report/summary"), params).one()
    changes = [dict(r._mapping) for r in conn.execute(db.q("report/changes"), params)]
    excluded = [dict(r._mapping) for r in conn.execute(db.q("report/excluded"), params)]
    active = conn.execute(db.q("load/active_users"), params).scalar_one()
    exceeded, message = diff.safety_check(
        {"user_deactivate": counts.get("user_deactivate", 0), "active_users": active}, settings
    )
    warnings = [message] if exceeded else []
    missing = conn.execute(db.q("load/mapping_missing"), params).all()
    warnings += [
        f"group {graph_id} is mapped to app group {name!r}, which does not exist: "
        "its members are not synced until group_mapping is fixed"
        for graph_id, name in missing
    ]
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
        "This was a dry run: nothing in the app was changed." if report.dry_run else "",
    ]


def markdown(report: Report) -> str:
    lines = [f"**{line}**" if i == 0 else line for i, line in enumerate(_headline(report))]
    lines += ["", "| change | count |", "| --- | ---: |"]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in sorted(report.counts.items())]
    if report.warnings:
        lines += ["", "**Warnings**", *[f"- {w}" for w in report.warnings]]
    if report.excluded_by_reason:
        lines += ["", "| left out because | users |", "| --- | ---: |"]
        lines += [f"| {k} | {v} |" for k, v in sorted(report.excluded_by_reason.items())]
    if report.changes:
        lines += ["", "| entity | action | who / what | before | after |", "|---|---|---|---|---|"]
        lines += [
            f"| {c['entity']} | {c['action']} | {c['label'] or c['key']} | "
            f"{_fmt(c['before'])} | {_fmt(c['after'])} |".replace("\n", " ")
            for c in report.changes[:SHOWN]
        ]
        if len(report.changes) > SHOWN:
            lines.append(f"\n… {len(report.changes) - SHOWN} more in the emailed CSV.")
    return "\n".join(lines)


def changes_csv(report: Report) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["entity", "action", "key", "who_or_what", "before", "after"])
    for c in report.changes:
        writer.writerow(
            [c["entity"], c["action"], c["key"], c["label"], _fmt(c["before"]), _fmt(c["after"])]
        )
    return buf.getvalue().encode()


def text(report: Report) -> str:
    lines = [line for line in _headline(report) if line] + ["", "Changes:"]
    lines += [f"  {k.replace('_', ' ')}: {v}" for k, v in sorted(report.counts.items())] or [
        "  none"
    ]
    if report.warnings:
        lines += ["", "Warnings:", *[f"  - {w}" for w in report.warnings]]
    if report.excluded:
        lines += ["", "Left out of the sync:"]
        lines += [f"  {k}: {v}" for k, v in sorted(report.excluded_by_reason.items())]
        lines += [
            f"  - {e['user_principal_name'] or e['graph_id']}: {', '.join(e['reasons'])}"
            for e in report.excluded[:SHOWN]
        ]
    lines += ["", "Every change is in the attached CSV."]
    return "\n".join(lines)


def _html(report: Report) -> str:
    esc = html.escape
    head = "".join(f"<p>{esc(line)}</p>" for line in _headline(report) if line)
    counts = "".join(
        f"<tr><td>{esc(k.replace('_', ' '))}</td><td align='right'>{v}</td></tr>"
        for k, v in sorted(report.counts.items())
    )
    warn = "".join(f"<li>{esc(w)}</li>" for w in report.warnings)
    changes = "".join(
        f"<tr><td>{esc(c['entity'])}</td><td>{esc(c['action'])}</td>"
        f"<td>{esc(str(c['label'] or c['key']))}</td><td>{esc(_fmt(c['before']))}</td>"
        f"<td>{esc(_fmt(c['after']))}</td></tr>"
        for c in report.changes[:SHOWN]
    )
    excluded = "".join(
        f"<tr><td>{esc(str(e['user_principal_name'] or e['graph_id']))}</td>"
        f"<td>{esc(', '.join(e['reasons']))}</td></tr>"
        for e in report.excluded[:SHOWN]
    )
    return (
        f"<html><body><h2>{esc(_title(report))}</h2>{head}"
        f"<h3>Changes</h3><table border='1' cellpadding='4'>{counts}</table>"
        + (f"<h3>Warnings</h3><ul>{warn}</ul>" if warn else "")
        + (
            "<h3>Every change (first 200; all in the CSV)</h3><table border='1' "
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
        attachments=[
            (f"{report.tenant}-run-{report.run_id}-changes.csv", changes_csv(report), "text/csv")
        ],
    )
