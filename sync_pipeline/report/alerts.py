"""Failure and staleness alerts for ops; quarantine, held-change and staleness notices for
tenant admins. No Dagster imports."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage

from sync_pipeline.core import config
from sync_pipeline.registry.staleness import Freshness, age
from sync_pipeline.report import mail


@dataclass(frozen=True)
class FailedSync:
    tenant: str
    job: str
    run_id: str
    step: str
    message: str
    code: str | None
    request_id: str | None

    @property
    def link(self) -> str:
        return f"{config.ui_url()}/runs/{self.run_id}"

    @property
    def reference(self) -> str:
        """The line an admin quotes to support: the run, and Graph's request-id if any."""
        request = f", request-id {self.request_id}" if self.request_id else ""
        return f"Support reference: run {self.run_id}{request}"


# msal's errors for a sign-in Entra ID refused (with an AADSTS code), Graph's for a token it
# refused, and ours for a permission missing from the token: none heals by itself.
_WILL_NOT_HEAL = frozenset(
    {
        "invalid_client",
        "invalid_grant",
        "invalid_tenant",
        "unauthorized_client",
        "InvalidAuthenticationToken",
        "missing_permission",
    }
)


def will_not_heal(failure: FailedSync) -> bool:
    """A failed sign-in or a missing permission: the tenant's admin must act, so they are
    told at the first failure, not when repeated failures pause the tenant."""
    return failure.code in _WILL_NOT_HEAL or "AADSTS" in failure.message


def ops_alert(failure: FailedSync, to: str) -> EmailMessage:
    lines = [
        f"The {failure.job} run of tenant {failure.tenant} failed.",
        "",
        f"tenant:      {failure.tenant}",
        f"step:        {failure.step}",
        f"error code:  {failure.code or 'n/a'}",
        f"request-id:  {failure.request_id or 'n/a'}",
        f"run:         {failure.link}",
        "",
        failure.message,
    ]
    return mail.build(
        to=to,
        subject=f"[sync-pipeline] {failure.tenant}: {failure.job} failed at {failure.step}",
        text="\n".join(lines),
    )


def quarantine_notice(failure: FailedSync, to: str, failures: int) -> EmailMessage:
    text = (
        f"Automatic syncs of your directory ({failure.tenant}) are paused: the last {failures} "
        "syncs failed, so the daily sync skips it until one succeeds.\n\n"
        f"What went wrong, as Microsoft Graph or the sync reported it:\n  {failure.message}\n\n"
        "What to do: fix the cause above (most often an expired client secret, a removed "
        "permission or consent, or a wrong tenant id), then run a manual sync; a successful "
        "manual sync lifts the pause.\n" + failure.reference
    )
    return mail.build(
        to=to,
        subject=f"Your Microsoft 365 sync ({failure.tenant}) is paused after {failures} failures",
        text=text,
    )


def credential_notice(failure: FailedSync, to: str) -> EmailMessage:
    """The tenant's admin, at the first failure a retry cannot fix: a refused sign-in or a
    missing permission."""
    text = (
        f"The sync of your directory ({failure.tenant}) could not read Microsoft Graph, and it "
        "will keep failing until the cause below is fixed: Microsoft refused its sign-in, or "
        "the app lacks a permission.\n\n"
        f"What Microsoft Graph or the sync reported:\n  {failure.message}\n\n"
        "What to do: in the Entra admin center, open the app registration the sync uses. For "
        "an expired or wrong secret, create a new client secret and give its value to your "
        "sync operator; for a missing permission, add it under API permissions and grant "
        "admin consent. Then run a manual sync (or ask your operator to run "
        f"`sync-pipeline doctor {failure.tenant}`, which checks it without syncing).\n"
        + failure.reference
    )
    return mail.build(
        to=to,
        subject=f"Your Microsoft 365 sync ({failure.tenant}) cannot sign in or read: action needed",
        text=text,
    )


def expiry_notice(tenant: str, what: str, detail: str, days: int, to: str) -> EmailMessage:
    """A credential of the tenant expires within `days` days (0: it has expired)."""
    when = "has expired" if days == 0 else f"expires within {days} days"
    text = (
        f"The {what} the sync of {tenant} signs in with {when}: {detail}.\n\n"
        "When it expires, every sync of this directory fails until it is replaced. What to "
        "do: in the Entra admin center, open the app registration (Certificates & secrets), "
        "add a new secret or certificate, give it to the sync's operator, and update "
        f"client_secret_expires_at; `sync-pipeline doctor {tenant}` then shows the new date."
    )
    return mail.build(
        to=to,
        subject=f"[sync-pipeline] {tenant}: the {what} {when}",
        text=text,
    )


def held_notice(tenant: str, sentences: list[str], to: str) -> EmailMessage:
    """One email to the tenant's admin listing the changes a sync newly held for a decision
    (load/gate.py); later syncs do not repeat it while the same changes stay held."""
    text = (
        f"The sync of your directory ({tenant}) applied its other changes, and held "
        f"{len(sentences)} for a person's decision instead of making them:\n\n"
        + "\n".join(f"  - {s}" for s in sentences)
        + "\n\nNothing is lost while they wait: held people stay active, in their groups. "
        "Review them with your sync operator (`sync-pipeline held "
        f"{tenant}`), then approve (`sync-pipeline approve {tenant} EMAIL...` or --all) or keep "
        f"them as they are (`sync-pipeline reject {tenant} EMAIL... --reason TEXT`)."
    )
    return mail.build(
        to=to,
        subject=f"Your Microsoft 365 sync ({tenant}): {len(sentences)} change(s) held for review",
        text=text,
    )


def stale_alert(f: Freshness, to: str, number: int) -> EmailMessage:
    """Ops: a tenant has gone without a complete read for longer than its stale_after_hours
    (registry/staleness.py); `number` 1 is the episode's first alert, later ones its daily
    reminders."""
    again = f" (reminder {number - 1}, daily while it lasts)" if number > 1 else ""
    lines = [
        f"{f.sentence()}{again}.",
        "",
        f"tenant:              {f.tenant}",
        f"last complete read:  {f.read_text()}",
        f"last applied sync:   {f.applied_text()}",
        f"auto sync:           {_schedule(f)}",
        f"latest failure:      {f.last_error or 'none since that read'}",
        f"runs:                {config.ui_url()}/runs (tag tenant={f.tenant})",
        "",
        f"What to do: `sync-pipeline doctor {f.tenant}` names a refused sign-in, a missing "
        "permission or an expired credential; fix the latest failure"
        + (" (the tenant's admin is told what to check)" if f.settings.admin_email else "")
        + ", or, when there is none, check that the daemon runs and that the tenant is not "
        f"quarantined; then sync it: `sync-pipeline sync {f.tenant}`.",
    ]
    return mail.build(
        to=to,
        subject=f"[sync-pipeline] {f.tenant}: no complete read for {age(f.now - _since(f))}",
        text="\n".join(lines),
    )


def stale_notice(f: Freshness, to: str) -> EmailMessage:
    """The tenant's admin: their directory has not been read for too long, and what to fix."""
    if f.last_error:
        cause = (
            "The last attempt failed, as Microsoft Graph or the sync reported it:\n"
            f"  {f.last_error}\n\n"
            "What to do: in the Entra admin center, check the app registration the sync signs "
            "in with: its client secret or certificate has not expired (Certificates & "
            "secrets), its API permissions (User.Read.All, GroupMember.Read.All, ...) still "
            "have admin consent, and the directory (tenant) id is right. Then ask your sync "
            f"operator to run `sync-pipeline sync {f.tenant}`; a successful sync ends this "
            "alert."
        )
    else:
        cause = (
            "No attempt to read it has failed: the sync has not run. Your sync operator has "
            "been alerted and is looking into it; nothing is needed from you unless they ask."
        )
    text = (
        f"Your Microsoft 365 directory ({f.tenant}) was last read completely "
        f"{f.read_text()}, so joiners, leavers and group changes since then are not in the "
        f"app yet (the limit is {f.settings.stale_after_hours} hours).\n\n{cause}"
    )
    if f.read_at is None:
        text = (
            f"Your Microsoft 365 directory ({f.tenant}) has not been read completely since it "
            f"was registered {age(f.now - f.registered_at)} ago, so nobody from it is in the "
            f"app yet.\n\n{cause}"
        )
    return mail.build(
        to=to,
        subject=f"Your Microsoft 365 sync ({f.tenant}) has not read your directory for "
        f"{age(f.now - _since(f))}",
        text=text,
    )


def _since(f: Freshness) -> dt.datetime:
    return f.read_at or f.registered_at


def _schedule(f: Freshness) -> str:
    s = f.settings
    return f"daily at {s.effective_sync_time:%H:%M} {s.timezone}" if s.auto_sync else "off"
