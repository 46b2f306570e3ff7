"""The wizard's first step: how the sync signs in to Graph (application or delegated
permissions, the tenant and app ids, the secret's variable, the cloud), the admin consent,
and reading the tenant's groups with those details, offering to stop when that cannot work."""

from __future__ import annotations

from typing import Any

import click

from sync_pipeline.cli.actions import default_env
from sync_pipeline.cli.common import Guid, console
from sync_pipeline.cli.wizard.answers import Answers
from sync_pipeline.cli.wizard.prompts import Paused, confirm, prompt
from sync_pipeline.core import db
from sync_pipeline.graph import CredentialError, GraphError
from sync_pipeline.registry import tenants

CLOUDS = {
    "global": ("https://graph.microsoft.com", "https://login.microsoftonline.com"),
    "us-gov": ("https://graph.microsoft.us", "https://login.microsoftonline.us"),
    "us-dod": ("https://dod-graph.microsoft.us", "https://login.microsoftonline.us"),
    "china": ("https://microsoftgraph.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
}
PERMISSIONS = "User.Read.All, GroupMember.Read.All, Organization.Read.All"


class SignIn(Answers):
    """The auth step and what it needs: credentials, consent, sign-in, the groups."""

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

    def ask_credentials(self) -> None:
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
                default=self.doc.get("client_secret_env") or default_env(self.slug),
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

    def sign_in(self) -> bool:
        """Delegated: the device-code sign-in (`tenant connect`); the admin's address becomes
        admin_email unless one is set."""
        from sync_pipeline.graph.auth import connect
        from sync_pipeline.registry import demo

        def show(flow: dict[str, Any]) -> None:
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
