"""`sync-pipeline tenant setup TENANT`: the setup wizard, one step per screen, in the product's
order. Every answer is checked at once (the same settings model as `tenant set`) and asked again
when it is wrong; groups are chosen from the tenant's real groups, read from Graph. Only
click.prompt reads input, so a script can pipe the answers on stdin.

`back` (or `<`) at any prompt returns to the previous step. A step that cannot succeed in
this shell (the client secret's variable is unset, Graph refuses) offers to stop: the answers
so far are kept as a draft, and `tenant setup SLUG` resumes from it. Settings asking for the
daily sync are saved with it off, and it is turned on only once the test sync succeeded (or
the admin says so, knowingly, without one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from sync_pipeline.cli.common import EXIT_FAILED, console, fail, prepare
from sync_pipeline.core import config, db, settings
from sync_pipeline.core.settings import SettingsError, TenantSettings
from sync_pipeline.graph import CredentialError, GraphError
from sync_pipeline.registry import tenants

STEPS = (
    "auth",
    "automatic sync",
    "email method",
    "include groups",
    "select groups manually",
    "map groups",
    "group types",
    "configure groups",
    "exclude unlicensed",
    "import managers",
    "deny list",
    "test sync",
    "done",
)
CLOUDS = {
    "global": ("https://graph.microsoft.com", "https://login.microsoftonline.com"),
    "us-gov": ("https://graph.microsoft.us", "https://login.microsoftonline.us"),
    "us-dod": ("https://dod-graph.microsoft.us", "https://login.microsoftonline.us"),
    "china": ("https://microsoftgraph.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
}
EMAIL_METHODS = {
    "upn": "the User Principal Name, the name people sign in with",
    "mail": "the mail attribute; users without a mailbox get no address",
    "mail_then_upn": "the mail attribute, or the sign-in name when there is no mail",
    "primary_smtp": "the primary SMTP: entry of proxyAddresses (what Exchange delivers to)",
    "primary_smtp_then_upn": "the primary SMTP: address, or the sign-in name without one",
}
PERMISSIONS = "User.Read.All, GroupMember.Read.All, Organization.Read.All"
MAX_SHOWN = 200
BACK_WORDS = frozenset({"back", "<"})
SKIPPED = "skipped"  # what a step returns when it asks nothing (groups not imported)


class Back(Exception):
    """The admin typed `back` at a prompt: the wizard returns to the previous step."""


class Paused(Exception):
    """The admin chose to stop here and resume later."""


class _Backable(click.ParamType):
    """The prompt's own type, except that `back` or `<` means "the previous step"."""

    def __init__(self, inner: click.ParamType) -> None:
        self.inner = inner
        self.name = inner.name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in BACK_WORDS:
            return Back
        return self.inner.convert(value, param, ctx)


def prompt(text: str, type: Any = None, default: Any = None, **options: Any) -> Any:
    """click.prompt that raises Back on `back` / `<`."""
    inner = click.types.convert_type(type, default)
    if isinstance(inner, click.Choice):  # click shows choices only for its own Choice type
        text = f"{text} ({', '.join(map(str, inner.choices))})"
    value = click.prompt(text, type=_Backable(inner), default=default, **options)
    if value is Back:
        raise Back
    return value


def confirm(text: str, default: bool) -> bool:
    """click.confirm's look ([Y/n]) with `back` understood."""
    hint = "[Y/n]" if default else "[y/N]"
    return prompt(
        f"{text} {hint}", type=click.BOOL, default="y" if default else "n", show_default=False
    )


def draft_path(slug: str) -> Path:
    """Where an unfinished setup's answers wait (no secrets: only variable names)."""
    return db.home() / "drafts" / f"{slug}.json"


def kind_of(group: dict[str, Any]) -> str:
    """The group's kind from Graph's three fields (GRAPH.md), as the transform decides it."""
    if "Unified" in (group.get("groupTypes") or []):
        return "microsoft365"
    if group.get("securityEnabled"):
        return "mail-enabled security" if group.get("mailEnabled") else "security"
    return "distribution list" if group.get("mailEnabled") else "other"


class Wizard:
    def __init__(self, slug: str, current: TenantSettings | None) -> None:
        self.slug = slug
        self.doc: dict[str, Any] = current.to_document() if current else {"slug": slug}
        self.groups: list[dict[str, Any]] = []
        self.number = 0
        self.active = False  # whether the daily sync was saved on

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def settings(self) -> TenantSettings:
        return settings.parse_settings(self.doc, source="setup")

    def step(self, why: str) -> None:
        console.rule(f"[bold]Step {self.number}/{len(STEPS)}: {STEPS[self.number - 1]}")
        console.print(why)

    def trial(self, **changes: Any) -> TenantSettings | None:
        """The settings with these changes, or None (after saying why) when they are refused."""
        try:
            return settings.parse_settings(self.doc | changes, source="setup")
        except SettingsError as exc:
            console.print(f"[red]{exc}[/] — try again")
            return None

    def ask(
        self, key: str, text: str, convert: Any = str, also: dict | None = None, **options: Any
    ) -> None:
        """Prompt until the answer makes valid settings (with `also`), then keep both."""
        also = also or {}
        while True:
            raw = prompt(text, **options)
            try:
                value = convert(raw)
            except (ValueError, SettingsError) as exc:
                console.print(f"[red]{key} = {raw!r}: {exc}[/] — try again")
                continue
            if self.trial(**{key: value}, **also) is not None:
                self.doc |= {key: value, **also}
                return

    # -- groups -----------------------------------------------------------------------------
    def show_groups(self, groups: list[dict[str, Any]], title: str) -> None:
        table = Table("#", "group", "kind", title=title)
        table.add_column("id", overflow="fold", min_width=36)
        for n, g in enumerate(groups[:MAX_SHOWN], start=1):
            table.add_row(str(n), g.get("displayName") or "", kind_of(g), g["id"])
        console.print(table)
        if len(groups) > MAX_SHOWN:
            console.print(f"… and {len(groups) - MAX_SHOWN} more: type their name or id")

    def pick(self, raw: str, shown: list[dict[str, Any]]) -> list[str]:
        """Group ids from numbers (of the list shown), ids or exact names, comma-separated."""
        by_id = {g["id"] for g in shown}
        chosen: list[str] = []
        for token in (t.strip() for t in raw.split(",")):
            if not token:
                continue
            if token.isdigit() and 1 <= int(token) <= min(len(shown), MAX_SHOWN):
                gid = shown[int(token) - 1]["id"]
            elif token in by_id:
                gid = token
            else:
                named = [
                    g["id"] for g in shown if (g.get("displayName") or "").lower() == token.lower()
                ]
                if len(named) != 1:
                    problem = "matches several groups" if named else "is no group shown"
                    raise ValueError(f"{token!r} {problem}; use its number or id")
                gid = named[0]
            if gid not in chosen:
                chosen.append(gid)
        return chosen

    def sign_in(self) -> bool:
        """Delegated: the device-code sign-in (`tenant connect`); the admin's address becomes
        admin_email unless one is set."""
        from sync_pipeline.graph.auth import connect
        from sync_pipeline.registry import demo

        def show(flow: dict) -> None:
            console.print(
                flow.get("message") or f"Enter {flow['user_code']} at {flow['verification_uri']}"
            )

        try:
            address = connect(demo.serving(self.settings), db.engine(), show)
        except (GraphError, CredentialError) as exc:
            console.print(f"[red]{exc}[/]")
            return False
        console.print(f"[green]Signed in[/] as {address or 'the admin'}.")
        if address and not self.doc.get("admin_email"):
            self.doc["admin_email"] = address
        return True

    def read_groups(self) -> bool:
        try:
            with console.status("Reading the tenant's groups from Graph…"):
                found = tenants.graph_groups(self.settings)
        except (GraphError, CredentialError) as exc:
            console.print(f"[red]{exc}[/]")
            return False
        self.groups = sorted(found, key=lambda g: ((g.get("displayName") or "").lower(), g["id"]))
        console.print(f"[green]Connected:[/] the tenant has {len(self.groups)} groups.")
        return True

    # -- the steps, in the product's order ----------------------------------------------------
    def auth(self) -> None:
        self.step(
            "The sync signs in to Microsoft Graph as an app registration: with application "
            "permissions (nobody signed in), or delegated through an admin's sign-in."
        )
        edit = False
        while True:
            s = self.settings if {"tenant_id", "client_id"} <= self.doc.keys() else None
            keep = (
                not edit
                and s is not None
                and bool(
                    s.client_secret_env
                    or s.client_certificate_path
                    or s.fake_tenant
                    or s.auth_mode == "delegated"
                )
            )
            if keep and s is not None:
                console.print(
                    f"Registered: tenant {s.tenant_id}, app {s.client_id}, "
                    f"Graph {s.graph_base_url}"
                    + (f", secret in ${s.client_secret_env}" if s.client_secret_env else "")
                )
                keep = confirm("Keep these sign-in details?", default=True)
            if not keep:
                self.ask_credentials()
            if self.connect():
                return
            edit = True

    def missing_secret(self) -> str | None:
        """The client secret's variable when it is unset here: no retry can read Graph then."""
        s = self.settings
        if (
            s.auth_mode == "application"
            and s.client_secret_env
            and not (s.fake_tenant or s.client_certificate_path)
            and not config.secret(s.client_secret_env)
        ):
            return s.client_secret_env
        return None

    def connect(self) -> bool:
        """Sign in (delegated) and read the groups. False: the admin wants to change the
        sign-in details; Paused: the admin stops here."""
        s = self.settings
        if s.auth_mode == "application":
            console.print(
                f"Grant admin consent for the application permissions {PERMISSIONS} (a Global "
                "Administrator opens this link once):"
            )
            link = f"{s.authority_host}/{s.tenant_id}/adminconsent?client_id={s.client_id}"
            console.print(f"  {link}", soft_wrap=True)  # unwrapped, so it can be copied
            missing = self.missing_secret()
            if missing:
                console.print(
                    f"[red]${missing} is not set in this shell[/]: without the client secret "
                    "the wizard cannot read the tenant's groups. Name another variable, or stop "
                    "here, set it, and resume."
                )
                return self.cannot_continue(retry=False)
        signed_in = s.auth_mode != "delegated"
        while True:
            signed_in = signed_in or self.sign_in()
            if signed_in and self.read_groups():
                return True
            if not self.cannot_continue(retry=True):
                return False

    def cannot_continue(self, *, retry: bool) -> bool:
        """Ask what to do about a step that failed: True retry, False edit, or Paused."""
        choices = [*(["retry"] if retry else []), "edit", "stop"]
        answer = prompt(
            "Retry (e.g. after granting consent), edit the sign-in details, or stop and "
            "resume later?"
            if retry
            else "Edit the sign-in details, or stop and resume later?",
            type=click.Choice(choices),
            default=choices[0],
        )
        if answer == "stop":
            raise Paused
        return answer == "retry"

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

    def ask_credentials(self) -> None:
        from sync_pipeline.cli.tenantcmd import Guid, _default_env

        console.print(
            "  [bold]application[/]: the app's own permissions and a client secret; runs with "
            "nobody signed in (recommended).\n"
            "  [bold]delegated[/]: an admin signs in once with a device code; syncs then act "
            "as that admin."
        )
        mode = prompt(
            "Permission type",
            type=click.Choice(["application", "delegated"]),
            default=self.doc.get("auth_mode", "application"),
        )
        self.doc["auth_mode"] = mode
        self.doc["tenant_id"] = prompt("Directory (tenant) id", type=Guid())
        self.doc["client_id"] = prompt("Application (client) id", type=Guid())
        if "fake_tenant" in self.doc:
            return
        if mode == "application":
            self.ask(
                "client_secret_env",
                "Environment variable holding the client secret (its name, not the secret)",
                default=self.doc.get("client_secret_env") or _default_env(self.slug),
            )
        else:
            self.doc.pop("client_secret_env", None)
        cloud = prompt("Cloud", type=click.Choice([*CLOUDS, "custom"]), default="global")
        if cloud == "custom":  # another national cloud, a proxy, or the local fake Graph
            self.ask("graph_base_url", "Graph host (https://, no path)")
            self.ask("authority_host", "Login host (https://, no path)")
            self.ask(
                "ca_bundle",
                "CA bundle to trust (empty = the system's)",
                convert=lambda raw: raw.strip() or None,
                default="",
            )
        else:
            self.doc["graph_base_url"], self.doc["authority_host"] = CLOUDS[cloud]

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
        self.show_groups(self.groups, "the tenant's groups")
        self.ask(
            "scope_group_ids",
            "Sync the members of (numbers, names or ids, comma-separated)",
            convert=lambda raw: self._nonempty(self.pick(raw, self.groups)),
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
        self.show_groups(eligible, "groups of the chosen types")
        self.ask(
            "group_ids",
            "Import which groups (numbers, names or ids; empty = all)",
            convert=lambda raw: self.pick(raw, eligible),
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
                    for gid in self.pick(left, eligible):
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

    def save(self, *, auto_sync: bool) -> int | None:
        from sync_pipeline.cli.tenantcmd import _partitions_add

        s = settings.parse_settings(self.doc | {"auto_sync": auto_sync}, source="setup")
        tenants.validate_against_graph(s, self.groups)
        with db.engine().begin() as conn:
            tenants.validate_against_app(conn, s)
            version = tenants.save(conn, s)
        _partitions_add([self.slug])
        draft_path(self.slug).unlink(missing_ok=True)
        self.active = auto_sync
        return version

    def test_sync(self, ctx: click.Context) -> None:
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
        from sync_pipeline.cli.synccmd import sync_command

        try:
            ctx.invoke(sync_command, tenant=self.slug, dry_run=True, allow_mass_deactivation=False)
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

    def where_the_report_went(self) -> None:
        """The test sync's report: emailed, written to the outbox (no SMTP), or not sent."""
        import dagster as dg

        from sync_pipeline.defs.load import test_sync_report

        records = dg.DagsterInstance.get().fetch_materializations(
            dg.AssetRecordsFilter(asset_key=test_sync_report.key, asset_partitions=[self.slug]),
            limit=1,
        )
        if not records.records:
            return
        meta = records.records[0].asset_materialization.metadata
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

    def walk(self, ctx: click.Context) -> None:
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
            lambda: self.test_sync(ctx),
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


def run(ctx: click.Context, slug: str) -> None:
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
        wizard.walk(ctx)
    except Paused:
        wizard.pause()
        raise SystemExit(EXIT_FAILED) from None
