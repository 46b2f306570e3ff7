"""The wizard's steps after sign-in, in the product's order, and the walk through all of
them with `back`: each step explains itself, asks, and keeps only answers the settings model
accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sync_pipeline.cli.common import console
from sync_pipeline.cli.wizard.prompts import (
    SKIPPED,
    Back,
    confirm,
    kind_of,
    pick,
    prompt,
    show_groups,
)
from sync_pipeline.cli.wizard.saving import Saving
from sync_pipeline.cli.wizard.signin import SignIn
from sync_pipeline.core import db, settings
from sync_pipeline.core.settings import SettingsError
from sync_pipeline.registry import tenants

EMAIL_METHODS = {
    "upn": "the User Principal Name, the name people sign in with",
    "mail": "the mail attribute; users without a mailbox get no address",
    "mail_then_upn": "the mail attribute, or the sign-in name when there is no mail",
    "primary_smtp": "the primary SMTP: entry of proxyAddresses (what Exchange delivers to)",
    "primary_smtp_then_upn": "the primary SMTP: address, or the sign-in name without one",
}


class Wizard(SignIn, Saving):
    """Every step of the setup of one tenant, new or registered."""

    def automatic_sync(self) -> None:
        self.step("An automatic sync runs once a day at a quiet hour in the tenant's time zone.")
        s = self.settings
        auto = confirm("Sync automatically every day?", default=s.auto_sync)
        self.doc["auto_sync"] = auto
        if auto:
            self.ask("sync_time", "Time of day (HH:MM)", default=f"{s.effective_sync_time:%H:%M}")
            self.ask("timezone", "Time zone (IANA, e.g. Europe/London)", default=s.timezone)

    def email_method(self) -> None:
        self.step("Each person is identified in the app by one address, taken from:")
        for name, what in EMAIL_METHODS.items():
            console.print(f"  [bold]{name}[/]: {what}")
        self.ask(
            "email_method",
            "Email method",
            type=click.Choice(list(EMAIL_METHODS)),
            default=self.settings.email_method,
        )

    def include_groups(self) -> None:
        self.step("Groups give the app its departments and teams; without them, only users.")
        self.doc["include_groups"] = confirm("Import groups?", default=self.settings.include_groups)

    def select_users(self) -> None:
        self.step(
            "Sync everyone, or only the members (nested groups included) of groups you choose."
        )
        scope = prompt(
            "User scope",
            type=click.Choice(["all", "selected_groups"]),
            default=self.settings.user_scope,
        )
        if scope == "all":
            self.doc |= {"user_scope": "all", "scope_group_ids": []}
            return
        show_groups(self.groups, "the tenant's groups")
        self.ask(
            "scope_group_ids",
            "Sync the members of (numbers, names or ids, comma-separated)",
            convert=lambda raw: self._nonempty(pick(raw, self.groups)),
            also={"user_scope": "selected_groups"},
            default=",".join(self.settings.scope_group_ids) or None,
        )

    @staticmethod
    def _nonempty(ids: list[str]) -> list[str]:
        if not ids:
            raise ValueError("choose at least one group")
        return ids

    def map_groups(self) -> str | None:
        self.step(
            "Mapping sends the members of a Microsoft 365 group into a group that already "
            "exists in the app, instead of creating a new one."
        )
        if not self.settings.include_groups:
            console.print("Skipped: groups are not imported.")
            self.doc |= {"group_mapping_enabled": False, "group_mapping": {}}
            return SKIPPED
        self.doc["group_mapping_enabled"] = confirm(
            "Map groups onto existing app groups?", default=self.settings.group_mapping_enabled
        )
        if not self.doc["group_mapping_enabled"]:
            self.doc["group_mapping"] = {}
        return None

    def group_types(self) -> str | None:
        self.step(
            "Microsoft 365 groups are teams; security groups (mail-enabled too) grant access. "
            "Distribution lists are never imported."
        )
        if not self.settings.include_groups:
            console.print("Skipped: groups are not imported.")
            return SKIPPED
        choices = {"both": ["microsoft365", "security"], "microsoft365": ["microsoft365"]}
        choices["security"] = ["security"]
        now = self.settings.group_types
        default = "both" if len(now) == 2 else now[0]
        answer = prompt("Group types", type=click.Choice(list(choices)), default=default)
        self.doc["group_types"] = choices[answer]
        return None

    def configure_groups(self) -> str | None:
        self.step("Choose which groups to import (none chosen: every group of those types).")
        s = self.settings
        if not s.include_groups:
            console.print("Skipped: groups are not imported.")
            return SKIPPED
        wanted = {"microsoft365"} if s.group_types == ["microsoft365"] else set()
        if "security" in s.group_types:
            wanted |= {"security", "mail-enabled security"}
        if "microsoft365" in s.group_types:
            wanted.add("microsoft365")
        eligible = [g for g in self.groups if kind_of(g) in wanted]
        show_groups(eligible, "groups of the chosen types")
        self.ask(
            "group_ids",
            "Import which groups (numbers, names or ids; empty = all)",
            convert=lambda raw: pick(raw, eligible),
            default=",".join(s.group_ids),
        )
        if self.settings.group_mapping_enabled:
            self.ask_mapping(eligible)
        return None

    def ask_mapping(self, eligible: list[dict[str, Any]]) -> None:
        with db.engine().connect() as conn:
            names = tenants.app_group_names(conn, self.slug)
        console.print("App groups to map onto: " + (", ".join(names) or "(none yet)"))
        imported = set(self.settings.group_ids) or {g["id"] for g in eligible}
        while True:
            raw = prompt(
                "Mappings as number=App group name, comma-separated (empty = none)",
                default=",".join(f"{k}={v}" for k, v in self.settings.group_mapping.items()),
            )
            try:
                mapping = {}
                for pair in (p for p in raw.split(",") if p.strip()):
                    left, sep, name = pair.partition("=")
                    if not sep:
                        raise ValueError(f"{pair.strip()!r} is not group=App group name")
                    for gid in pick(left, eligible):
                        if gid not in imported:
                            raise ValueError(f"group {left.strip()!r} is not imported")
                        mapping[gid] = name.strip()
                trial = self.trial(group_mapping=mapping)
                if trial is None:
                    continue
                with db.engine().connect() as conn:
                    tenants.validate_against_app(conn, trial)
            except (ValueError, SettingsError) as exc:
                console.print(f"[red]{exc}[/] — try again")
                continue
            self.doc["group_mapping"] = mapping
            return

    def exclude_unlicensed(self) -> None:
        self.step("Accounts without a licence are often shared mailboxes or rooms, not people.")
        self.doc["exclude_unlicensed"] = confirm(
            "Leave out unlicensed accounts?", default=self.settings.exclude_unlicensed
        )

    def import_managers(self) -> None:
        self.step("The app can show each person's manager as their Direct Manager.")
        self.doc["import_managers"] = confirm(
            "Import managers?", default=self.settings.import_managers
        )

    def deny_list(self) -> None:
        self.step(
            "Addresses on the deny list are never imported; *@domain leaves out a whole domain."
        )
        self.ask(
            "email_deny_list",
            "Deny list (comma-separated, @FILE.csv to read a CSV, empty = none)",
            convert=self._deny_entries,
            default=",".join(self.settings.email_deny_list),
        )

    def _deny_entries(self, raw: str) -> list[str]:
        text = raw.strip()
        if text.startswith("@"):
            path = Path(text[1:]).expanduser()
            if not path.is_file():
                raise ValueError(f"no file {str(path)!r}")
            return settings.deny_list_from_csv(
                path.read_text(encoding="utf-8-sig"), source=str(path), slug=self.slug
            )
        return [e.strip() for e in text.split(",") if e.strip()]

    def done(self) -> None:
        self.step("Setup is complete.")
        s = self.settings
        if s.auto_sync and self.active:
            console.print(
                f"{self.slug} syncs automatically every day at "
                f"{s.effective_sync_time:%H:%M} {s.timezone} "
                "(the first within 24 hours)."
            )
        elif s.auto_sync:
            console.print(f"{self.slug} is saved with its daily sync off (no test sync yet).")
        console.print(f"Sync now with: sync-pipeline sync {self.slug}")
        console.print(f"Ask why someone is (not) synced: sync-pipeline explain {self.slug} EMAIL")

    def walk(self) -> None:
        """Every step in order; `back` at a prompt returns to the previous step that asks
        something."""
        order = [
            self.auth,
            self.automatic_sync,
            self.email_method,
            self.include_groups,
            self.select_users,
            self.map_groups,
            self.group_types,
            self.configure_groups,
            self.exclude_unlicensed,
            self.import_managers,
            self.deny_list,
            self.test_sync,
            self.done,
        ]
        i, backwards = 0, False
        while i < len(order):
            self.number = i + 1
            try:
                if order[i]() == SKIPPED and backwards and i > 0:
                    i -= 1
                    continue
            except Back:
                if i == 0:
                    console.print("[yellow]This is the first step.[/]")
                    continue
                console.print("[yellow]Back to the previous step.[/]")
                i, backwards = i - 1, True
                continue
            i, backwards = i + 1, False
