"""A tenant's credential and permission health, without reading its directory: what
`sync-pipeline doctor` shows, what a sync checks before its first read, and what the daily
health sensor alerts on before a credential expires.

- The access token's permissions: application ones from its `roles` claim, delegated ones from
  `scp` (Entra ID access tokens for Graph are JWTs; a client reads their claims and never checks
  their signature, which is Graph's business). Each permission the tenant's settings need is
  named with the setting that needs it.
- The credential's expiry: a certificate's from its PEM, a client secret's from the setting
  `client_secret_expires_at` or, when the app holds Application.Read.All, from its app
  registration in Graph (the secret whose `hint`, its first three characters, matches).
- A delegated sign-in's age: refresh tokens lapse after 90 days without use.
- The clock: the Graph host's `Date` header against this machine's (sign-in tolerates about
  five minutes of skew).
"""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.credentials import resolve_credential
from sync_pipeline.graph.errors import (
    MAILBOX_SETTINGS_READ,
    MEMBER_READ_HIDDEN,
    CredentialError,
    GraphAuthError,
    GraphError,
)

OK, WARN, FAIL, UNKNOWN = "ok", "warn", "fail", "unknown"
# Days before an expiry at which the health sensor alerts (and doctor warns from the first).
ALERT_DAYS = (30, 14, 7)
REFRESH_TOKEN_DAYS = 90  # Entra ID: a refresh token unused for 90 days lapses
REFRESH_WARN_DAYS = 60
SKEW_WARN_SECONDS = 60.0
SKEW_FAIL_SECONDS = 300.0  # Entra ID's tolerance for a client assertion's times
APPLICATION_READ = "Application.Read.All"


@dataclass(frozen=True)
class Finding:
    """One health check: `status` ok, warn, fail or unknown, and what to do."""

    check: str
    status: str
    detail: str
    expires_at: dt.datetime | None = None  # a credential's expiry (the sensor's alerts)
    credential: str | None = None  # which credential expires: client_secret or certificate


class MissingPermission(CredentialError):
    """The token lacks a permission a sync cannot read without (found before any read)."""


def needed(settings: TenantSettings, hidden_groups: int = 0) -> list[tuple[str, str, bool]]:
    """(permission, the setting or read that needs it, whether a sync fails without it)."""
    groups = (
        "include_groups: true"
        if settings.include_groups
        else "user_scope: selected_groups"
        if settings.user_scope == "selected_groups"
        else "every sync reads the groups (their names and nesting)"
    )
    licences = (
        "exclude_unlicensed: true"
        if settings.exclude_unlicensed
        else "every sync reads the licence products (subscribedSkus) for its report"
    )
    rows = [
        ("User.Read.All", "every sync reads the users", True),
        ("GroupMember.Read.All", groups, True),
        ("Organization.Read.All", licences, True),
    ]
    if settings.exclude_mailbox_types:
        rows.append(
            (
                MAILBOX_SETTINGS_READ,
                "exclude_mailbox_types: " + ", ".join(settings.exclude_mailbox_types),
                True,
            )
        )
    if hidden_groups:
        rows.append(
            (
                MEMBER_READ_HIDDEN,
                f"{hidden_groups} hidden-membership group(s): without it their memberships "
                "stay as last read",
                False,
            )
        )
    return rows


def claims(token: str) -> dict[str, Any] | None:
    """The access token's claims, or None for a token that is not a JWT."""
    try:
        decoded = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return decoded if isinstance(decoded, dict) else None


def granted(settings: TenantSettings, token_claims: dict[str, Any]) -> set[str]:
    """The permissions a token carries: `roles` (application) or `scp` (delegated)."""
    if settings.auth_mode == "application":
        return {str(r) for r in token_claims.get("roles") or []}
    return set(str(token_claims.get("scp") or "").split())


def permission_findings(
    settings: TenantSettings, token: str, hidden_groups: int = 0
) -> list[Finding]:
    kind = "roles" if settings.auth_mode == "application" else "scp"
    token_claims = claims(token)
    if token_claims is None:
        return [
            Finding(
                "permissions",
                UNKNOWN,
                "the access token is not a JWT: its permissions cannot be read here",
            )
        ]
    have = granted(settings, token_claims)
    findings = []
    for permission, why, required in needed(settings, hidden_groups):
        if permission in have:
            findings.append(Finding(f"permission {permission}", OK, f"granted ({why})"))
            continue
        findings.append(
            Finding(
                f"permission {permission}",
                FAIL if required else WARN,
                f"missing from the token's {kind}; needed by {why}: add the "
                f"{settings.auth_mode} permission {permission} in the app registration and "
                "grant admin consent",
            )
        )
    return findings


def require_permissions(client: GraphClient, hidden_groups: int = 0) -> None:
    """Fail fast, before any read, when the token lacks a permission the sync needs."""
    missing = [
        f
        for f in permission_findings(client.settings, client.token(), hidden_groups)
        if f.status == FAIL
    ]
    if missing:
        names = ", ".join(f.check.removeprefix("permission ") for f in missing)
        raise MissingPermission(f"tenant {client.tenant}: {names} {missing[0].detail}")


def _expiry(
    check: str, credential: str, ends: dt.datetime, now: dt.datetime, source: str
) -> Finding:
    days = (ends - now).total_seconds() / 86400
    when = ends.strftime("%Y-%m-%d %H:%M UTC")
    if days <= 0:
        return Finding(check, FAIL, f"expired {when} ({source}): renew it", ends, credential)
    if days <= ALERT_DAYS[0]:
        return Finding(
            check,
            WARN,
            f"expires {when}, in {days:.0f} day(s) ({source}): renew it",
            ends,
            credential,
        )
    return Finding(check, OK, f"expires {when}, in {days:.0f} days ({source})", ends, credential)


def certificate_finding(settings: TenantSettings, now: dt.datetime) -> Finding | None:
    """The client certificate's expiry, read from its PEM (None without a certificate)."""
    if not settings.client_certificate_path:
        return None
    from cryptography import x509

    path = Path(settings.client_certificate_path).expanduser()
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return Finding(
            "certificate",
            FAIL,
            f"client_certificate_path {str(path)!r} holds no readable certificate "
            f"({type(exc).__name__}): point it at the PEM with the certificate and its key",
        )
    return _expiry("certificate", "certificate", cert.not_valid_after_utc, now, f"from {path}")


def secret_finding(
    settings: TenantSettings, client: GraphClient | None, token: str | None, now: dt.datetime
) -> Finding | None:
    """The client secret's expiry: the setting, else the app registration in Graph when
    the token holds Application.Read.All (None without a secret)."""
    if settings.auth_mode != "application" or settings.client_certificate_path:
        return None
    if settings.client_secret_expires_at is not None:
        return _expiry(
            "client secret",
            "client_secret",
            settings.client_secret_expires_at,
            now,
            "client_secret_expires_at",
        )
    token_claims = claims(token) if token else None
    if (
        client is None
        or token_claims is None
        or APPLICATION_READ not in granted(settings, token_claims)
    ):
        return Finding(
            "client secret",
            UNKNOWN,
            "expiry unknown: copy the secret's expiry from the Entra admin center "
            "(App registrations > Certificates & secrets) into client_secret_expires_at, or "
            f"grant {APPLICATION_READ} to read it from Graph",
        )
    try:
        app = client.get(f"/applications(appId='{settings.client_id}')?$select=passwordCredentials")
    except GraphError as exc:
        return Finding("client secret", UNKNOWN, f"expiry unreadable from Graph: {exc}")
    credential = resolve_credential(settings)
    secret = credential[:3] if isinstance(credential, str) else ""  # what Graph's hint shows
    ends = [
        dt.datetime.fromisoformat(str(c["endDateTime"]).replace("Z", "+00:00"))
        for c in app.get("passwordCredentials") or []
        if c.get("endDateTime") and (not secret or c.get("hint") == secret)
    ]
    if not ends:
        return Finding(
            "client secret", UNKNOWN, "no secret of the app registration matches the one in use"
        )
    return _expiry("client secret", "client_secret", min(ends), now, "the app registration")


def refresh_finding(updated_at: dt.datetime | None, now: dt.datetime) -> Finding:
    """A delegated sign-in: its refresh token lapses after 90 days without use."""
    if updated_at is None:
        return Finding(
            "sign-in", FAIL, "no admin has signed in: run `sync-pipeline tenant connect`"
        )
    idle = (now - updated_at).total_seconds() / 86400
    lapses = updated_at + dt.timedelta(days=REFRESH_TOKEN_DAYS)
    detail = f"refresh token last used {idle:.0f} day(s) ago; it lapses after {REFRESH_TOKEN_DAYS}"
    if idle >= REFRESH_TOKEN_DAYS:
        return Finding("refresh token", FAIL, f"{detail}: run `sync-pipeline tenant connect`")
    if idle >= REFRESH_WARN_DAYS:
        return Finding("refresh token", WARN, f"{detail}: sync, or run `tenant connect`", lapses)
    return Finding("refresh token", OK, detail)


def clock_finding(client: GraphClient, local: dt.datetime | None = None) -> Finding:
    """This machine's clock against the Graph host's (its `Date` header)."""
    try:
        resp = client.http.head(client.settings.graph_base_url, timeout=10)
    except OSError as exc:
        return Finding("clock", UNKNOWN, f"the Graph host did not answer ({type(exc).__name__})")
    header = resp.headers.get("Date")
    if not header:
        return Finding("clock", UNKNOWN, "the Graph host sent no Date header")
    theirs = email.utils.parsedate_to_datetime(header)
    mine = local or dt.datetime.now(dt.UTC)
    skew = (mine - theirs).total_seconds()
    detail = f"{skew:+.0f} s against {client.settings.graph_base_url}"
    if abs(skew) >= SKEW_FAIL_SECONDS:
        return Finding("clock", FAIL, f"{detail}: sign-in fails past 5 minutes; fix NTP")
    if abs(skew) >= SKEW_WARN_SECONDS:
        return Finding("clock", WARN, f"{detail}: check NTP")
    return Finding("clock", OK, detail)


def facts(conn: sa.Connection, slug: str) -> tuple[int, dt.datetime | None]:
    """(hidden-membership groups as last staged, when the delegated sign-in was last used)."""
    row = conn.execute(db.q("graph/health_facts"), {"t": slug}).one()
    return int(row.hidden), row.refreshed_at


def examine(
    settings: TenantSettings,
    *,
    hidden_groups: int = 0,
    refreshed_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
    client: GraphClient | None = None,
) -> list[Finding]:
    """Every health check of one tenant, without reading its directory: a token is acquired
    (a sign-in that fails is the first finding, and the rest that need it are skipped), the
    app registration is read only with Application.Read.All."""
    now = now or dt.datetime.now(dt.UTC)
    findings: list[Finding] = []
    try:
        # msal looks the authority up as the client is made: a sign-in host that does not
        # answer fails here, before any token is asked for
        client = client or GraphClient(settings, shared_tokens=False, connect_retries=0)
    except CredentialError as exc:
        return [Finding("credential", FAIL, str(exc))]
    except OSError as exc:  # requests' errors
        return [_unanswered(settings, exc)]
    try:
        if settings.auth_mode == "delegated":
            findings.append(refresh_finding(refreshed_at, now))
        cert = certificate_finding(settings, now)
        if cert is not None:
            findings.append(cert)
        try:
            token: str | None = client.token()
        except (GraphAuthError, CredentialError) as exc:
            findings.append(Finding("sign-in", FAIL, str(exc)))
            token = None
        except OSError as exc:  # requests' errors: the sign-in host did not answer
            findings.append(_unanswered(settings, exc))
            token = None
        if token is not None:
            findings.append(Finding("sign-in", OK, f"a token from {settings.authority_host}"))
            findings += permission_findings(settings, token, hidden_groups)
        secret = secret_finding(settings, client if token else None, token, now)
        if secret is not None:
            findings.append(secret)
        findings.append(clock_finding(client))
    finally:
        client.close()
    return findings


def _unanswered(settings: TenantSettings, exc: OSError) -> Finding:
    return Finding(
        "sign-in",
        FAIL,
        f"{settings.authority_host} did not answer ({type(exc).__name__}): check "
        "authority_host and this machine's network",
    )


def worst(findings: list[Finding]) -> str:
    """The worst status of a list: fail over warn over ok (unknown counts as ok)."""
    statuses = {f.status for f in findings}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK
