"""`sync-pipeline tenant setup TENANT`: the setup wizard, one step per screen, in the product's
order. Every answer is checked at once (the same settings model as `tenant set`) and asked again
when it is wrong; groups are chosen from the tenant's real groups, read from Graph. Only
click.prompt reads input, so a script can pipe the answers on stdin.

`back` (or `<`) at any prompt returns to the previous step. A step that cannot succeed in
this shell (the client secret's variable is unset, Graph refuses) offers to stop: the answers
so far are kept as a draft, and `tenant setup SLUG` resumes from it. Settings asking for the
daily sync are saved with it off, and it is turned on only once the test sync succeeded (or
the admin says so, knowingly, without one). At the test-sync step, a change of scope of a
tenant synced before is previewed first (cli/impact.py, as `tenant set` does) and saved only
when the admin says yes.
"""

from __future__ import annotations

import json

import click

from sync_pipeline.cli.common import EXIT_FAILED, console, fail, handle_errors, prepare
from sync_pipeline.cli.wizard.answers import STEPS
from sync_pipeline.cli.wizard.prompts import Back, Paused, confirm
from sync_pipeline.cli.wizard.saving import draft_path
from sync_pipeline.cli.wizard.steps import Wizard
from sync_pipeline.core import db, settings
from sync_pipeline.core.settings import SettingsError, TenantSettings
from sync_pipeline.registry import tenants

__all__ = ["STEPS", "Wizard", "draft_path", "run", "setup_command"]


@click.command("setup")
@click.argument("slug")
@handle_errors
def setup_command(slug: str) -> None:
    """The setup wizard for tenant SLUG: every setting, step by step, explained.

    Shows the tenant's groups read from Graph to choose and map, checks each answer, saves,
    and offers a test sync. Before saving a change of scope of a tenant synced before, shows
    what its next sync would do and asks (no: back a step). Answers can be piped on stdin,
    one per line.
    """
    run(slug)


def run(slug: str) -> None:
    """Walk every step for tenant `slug` (new or registered), then offer a test sync."""
    prepare()
    current: TenantSettings | None = None
    with db.engine().connect() as conn:
        try:
            current = tenants.get(conn, slug).settings
        except tenants.UnknownTenantError:
            current = None
        except SettingsError as exc:
            console.print(f"[yellow]{exc}[/]: the wizard starts from the registered sign-in only")
    wizard = Wizard(slug, current)
    if current is None:
        try:  # the slug alone, before any question is asked
            settings.parse_settings(
                {"slug": slug, "tenant_id": "0" * 32, "client_id": "0" * 32, "fake_tenant": "x"}
            )
        except SettingsError as exc:
            fail(str(exc))
    draft = draft_path(slug)
    if draft.is_file():
        console.print(f"An unfinished setup of {slug} was paused; its answers are in {draft}.")
        try:
            resume = confirm("Resume from those answers?", default=True)
        except Back:
            resume = True
        if resume:
            wizard.doc = json.loads(draft.read_text(encoding="utf-8")) | {"slug": slug}
    try:
        wizard.walk()
    except Paused:
        wizard.pause()
        raise SystemExit(EXIT_FAILED) from None
