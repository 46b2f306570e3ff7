"""Where the wizard's answers go: a draft while paused, the tenant registry when saved, and
the test sync that decides whether the daily sync is turned on."""

from __future__ import annotations

import json
from pathlib import Path

from sync_pipeline.cli import actions, impact
from sync_pipeline.cli.common import console
from sync_pipeline.cli.wizard.answers import Answers
from sync_pipeline.cli.wizard.prompts import Back, confirm
from sync_pipeline.core import db, settings
from sync_pipeline.registry import tenants


def draft_path(slug: str) -> Path:
    """Where an unfinished setup's answers wait (no secrets: only variable names)."""
    return db.home() / "drafts" / f"{slug}.json"


class Saving(Answers):
    """Pausing, saving, and the test sync step."""

    def pause(self) -> None:
        """Keep the answers as a draft and say how to resume."""
        path = draft_path(self.slug)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.doc, default=str, indent=2), encoding="utf-8")
        console.print(
            f"[yellow]Setup of {self.slug} paused[/]: nothing was saved to the tenant registry; "
            f"the answers so far are kept in {path}."
        )
        missing = self.missing_secret() if "tenant_id" in self.doc else None
        if missing:
            console.print(
                "Set the client secret here, and where the UI, the daemon and the runs start:\n"
                f"  export {missing}='<the client secret>'",
                soft_wrap=True,
            )
        console.print(f"Resume with: sync-pipeline tenant setup {self.slug}")

    def save(self, *, auto_sync: bool) -> int | None:
        s = settings.parse_settings(self.doc | {"auto_sync": auto_sync}, source="setup")
        tenants.validate_against_graph(s, self.groups)
        with db.engine().begin() as conn:
            tenants.validate_against_app(conn, s)
            version = tenants.save(conn, s)
        actions.partitions_add([self.slug])
        draft_path(self.slug).unlink(missing_ok=True)
        self.active = auto_sync
        return version

    def test_sync(self) -> None:
        self.step(
            "A test sync reads everything and reports what would change, without touching "
            "the app; the report goes to the admin address."
        )
        self.ask(
            "admin_email",
            "Admin address for reports (empty = none)",
            convert=lambda raw: raw.strip() or None,
            default=self.settings.admin_email or "",
        )
        self.preview_change()
        wanted = self.settings.auto_sync
        # The daily sync starts only once a test sync showed what it would do.
        version = self.save(auto_sync=False)
        console.print(
            f"[green]Saved[/] the settings of {self.slug} "
            + (f"(version {version})" if version else "(unchanged)")
            + ("; the daily sync stays off until the test sync succeeds." if wanted else ".")
        )
        command = f"sync-pipeline sync {self.slug} --dry-run"
        turn_on = f"sync-pipeline tenant set {self.slug} auto_sync=true"
        if not confirm("Run a test sync now?", default=True):
            console.print(f"Run it later with: {command}")
            if wanted and confirm("Turn the daily sync on anyway, without a test sync?", False):
                self.save(auto_sync=True)
                console.print(
                    f"[yellow]Saved with the daily sync on[/], before any test sync of {self.slug}."
                )
            elif wanted:
                console.print(
                    f"The daily sync is off; after a test sync, turn it on: {turn_on}",
                    soft_wrap=True,
                )
            return
        try:
            actions.sync(self.slug, dry_run=True)
        except SystemExit as exc:
            if exc.code:
                console.print(f"[red]The test sync failed;[/] fix the cause and run: {command}")
                if wanted:
                    console.print(
                        f"The daily sync stays off; then turn it on: {turn_on}", soft_wrap=True
                    )
                raise
        self.where_the_report_went()
        if wanted:
            self.save(auto_sync=True)
            console.print(
                f"[green]The test sync succeeded:[/] the daily sync of {self.slug} is on."
            )

    def preview_change(self) -> None:
        """A registered tenant whose scope changes: what its next sync would do with the new
        settings (cli/impact.py), and whether to save them; no goes back a step."""
        with db.engine().connect() as conn:
            stored = actions.stored_or_none(conn, self.slug)
        question = impact.preview_change(stored, self.settings)
        if question is None:
            return
        if not confirm(f"Save {question.what}?", default=not question.risky):
            console.print("[yellow]Not saved.[/] Change the answers (`back` for earlier steps).")
            raise Back

    def where_the_report_went(self) -> None:
        """The test sync's report: emailed, written to the outbox (no SMTP), or not sent."""
        import dagster as dg

        from sync_pipeline.defs.load import test_sync_report

        records = dg.DagsterInstance.get().fetch_materializations(
            dg.AssetRecordsFilter(asset_key=test_sync_report.key, asset_partitions=[self.slug]),
            limit=1,
        )
        materialization = records.records[0].asset_materialization if records.records else None
        if materialization is None:
            return
        meta = materialization.metadata
        value = {k: v.value for k, v in meta.items()}
        if value.get("report_file"):
            console.print(
                "No SMTP server is configured (SMTP_HOST is unset), so the report was not "
                f"emailed: it was written to {value['report_file']}",
                soft_wrap=True,
            )
        elif self.settings.admin_email:
            console.print(f"The report was sent to {value.get('sent_to')}.")
        else:
            console.print(
                "No admin address: the report was not emailed. Every planned change: "
                f"sync-pipeline report {self.slug} {value.get('sync_run_id')} --csv changes.csv"
            )
