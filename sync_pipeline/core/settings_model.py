"""The TenantSettings model: a tenant's fields in the setup wizard's order, their validators,
and `parse_settings`, which turns pydantic's errors into SettingsError.

Errors name the tenant, the field and the value, so that an admin can fix them without
reading code. No Dagster imports here (ground floor).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import ssl
import uuid
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sync_pipeline.core import settings_errors

GLOBAL_GRAPH = "https://graph.microsoft.com"
GLOBAL_LOGIN = "https://login.microsoftonline.com"

EmailMethod = Literal["upn", "mail", "mail_then_upn", "primary_smtp", "primary_smtp_then_upn"]
GroupType = Literal["microsoft365", "security"]
# Graph's mailboxSettings.userPurpose values (resources/mailboxsettings.md), in its order;
# `unknownFutureValue` is the evolvable-enum sentinel, never a value to choose.
MailboxType = Literal["user", "linked", "shared", "room", "equipment", "others"]
MAILBOX_TYPES: tuple[str, ...] = ("user", "linked", "shared", "room", "equipment", "others")

# Every pattern is applied with fullmatch: `$` would also match before a final newline, and
# "contoso2\n" registered as a slug.
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DOMAIN_PATTERN = re.compile(r"\*@[^@\s*]+\.[^@\s*]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The tenant-sync schedule ticks this often (defs/automation.py): a sync_interval is a whole
# number of ticks, so that "every N minutes" is what the schedule does, never more often.
SCHEDULE_TICK_MINUTES = 5
SYNC_INTERVAL_MIN, SYNC_INTERVAL_MAX = 5, 24 * 60
_OFF_WORDS = frozenset({"off", "none", "null", "~", ""})


class SettingsError(ValueError):
    """Bad tenant settings: the message names the tenant, the field and the value."""


def default_sync_time(slug: str) -> dt.time:
    """A time of day spread over 00:00-05:59 by the slug's hash, stable across processes."""
    minutes = int(hashlib.sha256(slug.encode()).hexdigest(), 16) % (6 * 60)
    return dt.time(minutes // 60, minutes % 60)


def is_deny_entry(text: str) -> bool:
    """An address or a *@domain pattern: what the deny list holds."""
    return bool((_ADDRESS.fullmatch(text) and "*" not in text) or _DOMAIN_PATTERN.fullmatch(text))


def _https_url(value: str, *, path: bool) -> str | None:
    """Why `value` is not an https URL we can send a token or a subscription to (None: it
    is one): parsed, not pattern-matched. https only, a host and nothing before it (no
    userinfo: in https://graph.example@evil.example the token's host is evil.example), a port
    that is a port, no query or fragment, no whitespace or control characters, and a path
    only where the field takes one."""
    if any(c.isspace() or not c.isprintable() for c in value):
        return "contains spaces or control characters"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "is not a URL"
    if parts.scheme != "https":
        return "must start with https://"
    if "@" in parts.netloc:
        return "must not carry a user name or password (user@host) before the host"
    if not parts.hostname:
        return "names no host"
    if port == 0:
        return "names port 0"
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return "must not have a query (?...) or fragment (#...)"
    if parts.path not in ("", "/") and not path:
        return "must be a host without a path"
    return None


def _https_host(value: str, example: str) -> str:
    value = value.rstrip("/")
    why = _https_url(value, path=False)
    if why is not None:
        raise ValueError(
            f"must be an https:// host without a path (e.g. {example}; the client adds /v1.0 "
            f"itself): it {why}"
        )
    return value


def pem_problem(path: str) -> str | None:
    """Why `path` cannot serve as a CA bundle (None when it can): missing, or no PEM
    certificates. Loaded the way requests and msal will load it, so a pass here is a pass there.
    """
    file = Path(path).expanduser()
    if not file.exists():
        return "does not exist on this machine (a PEM file of CA certificates is expected)"
    if not file.is_file():
        return "is not a file (a PEM file of CA certificates is expected)"
    try:
        ssl.create_default_context(cafile=str(file))
    except (ssl.SSLError, ValueError):  # SSLError first: it is an OSError too
        return "holds no PEM certificate (-----BEGIN CERTIFICATE----- blocks are expected)"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return None


class TenantSettings(BaseModel):
    """One tenant's settings. Field order follows the wizard."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    slug: str = Field(description="Our key for the tenant: lower-case letters, digits, dashes.")
    display_name: str | None = None

    # auth
    auth_mode: Literal["application", "delegated"] = "application"
    tenant_id: str = Field(description="Microsoft's directory (tenant) id, a GUID.")
    client_id: str = Field(description="The app registration's application (client) id.")
    client_secret_env: str | None = Field(
        default=None, description="Name of the environment variable holding the client secret."
    )
    client_secret_expires_at: dt.datetime | None = Field(
        default=None,
        description="When the client secret expires (the Entra admin center shows it): "
        "doctor and the health alerts warn 30, 14 and 7 days before.",
    )
    client_certificate_path: str | None = None
    client_certificate_thumbprint: str | None = None
    graph_base_url: str = GLOBAL_GRAPH
    authority_host: str = GLOBAL_LOGIN
    ca_bundle: str | None = None
    fake_tenant: str | None = Field(
        default=None,
        description="Serve this bundled fake Graph tenant in-process instead of calling Microsoft "
        "(the demo).",
    )

    # step 2: automatic sync
    auto_sync: bool = True
    sync_time: dt.time | None = None
    timezone: str = "UTC"
    # Intraday syncs beside the daily one (registry/intervals.py): incremental delta reads
    # every this many minutes while auto_sync is on; None is off.
    sync_interval: int | None = Field(
        default=None,
        description="Minutes between intraday incremental syncs (5-1440, a multiple of 5), or off.",
    )
    # Delta cannot see everything (a change Graph's delta misses, a staging row edited by
    # hand): the daily sync on the day this many days after the last full read reads in full.
    full_read_every_days: int = Field(
        default=7,
        ge=1,
        le=90,
        description="Days between full reads: that day's daily sync re-reads the whole directory.",
    )

    # step 3..11
    email_method: EmailMethod = "upn"
    include_groups: bool = True
    user_scope: Literal["all", "selected_groups"] = "all"
    scope_group_ids: list[str] = Field(default_factory=list)
    group_mapping_enabled: bool = False
    group_types: list[GroupType] = Field(
        default_factory=lambda: list[GroupType](["microsoft365", "security"])
    )
    group_ids: list[str] = Field(default_factory=list)
    group_mapping: dict[str, str] = Field(default_factory=dict)
    exclude_unlicensed: bool = False
    # Mailboxes that are not people (shared, room, equipment, ...), told apart by Graph's
    # mailboxSettings.userPurpose (needs MailboxSettings.Read): read only while this is set,
    # and for each person only when not known yet or when their row changed (extract/purposes.py).
    exclude_mailbox_types: list[MailboxType] = Field(
        default_factory=list,
        description="Mailbox types (Graph's userPurpose: user, linked, shared, room, "
        "equipment, others) never imported; empty: no mailbox type is read.",
    )
    import_managers: bool = False
    email_deny_list: list[str] = Field(default_factory=list)

    # beyond the wizard
    include_disabled: bool = False
    include_guests: bool = False
    admin_email: str | None = None
    max_deactivation_percent: float = Field(default=10.0, ge=0, le=100)
    max_deactivations: int = Field(default=500, ge=0)
    # The Dagster UI authenticates nobody (docs/operations.md): a run launched from it (or
    # through its GraphQL API) may not lift the safety limit unless the tenant allows it here.
    allow_mass_deactivation_from_ui: bool = Field(
        default=False,
        description="Honour allow_mass_deactivation in the run config of a run launched from "
        "the UI (off: only `sync-pipeline sync --allow-mass-deactivation` lifts the limit).",
    )
    # The deactivation gate (load/gate.py, docs/architecture.md): a person who leaves scope is
    # pending first, and deactivated once out of scope in this many consecutive complete reads
    # and for this many hours. The defaults: two reads, so that no single odd read (a group
    # emptied by mistake, a filter mis-set in Entra ID for an hour) deactivates anyone, and
    # 20 hours, so that with the daily sync a leaver is deactivated by the next day's sync (a
    # schedule a few hours earlier still counts) and the admin has a day to see the pending
    # list in the report. 1 and 0 deactivate at the first read, as before the gate.
    deactivation_grace_reads: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Consecutive complete reads out of scope before a person is deactivated.",
    )
    deactivation_grace_hours: float = Field(
        default=20.0,
        ge=0,
        le=24 * 90,
        description="... and hours out of scope before a person is deactivated.",
    )
    deleted_skip_grace: bool = Field(
        default=False,
        description="People deleted from Graph for good are deactivated at once "
        "(a soft-deleted person, restorable for 30 days, keeps the grace period).",
    )
    protected_users: list[str] = Field(
        default_factory=list,
        description="Addresses or Graph user ids the sync never deactivates (break-glass admins).",
    )
    max_group_removal_percent: float = Field(
        default=30.0,
        ge=0,
        le=100,
        description="A group losing more of its members in one sync has those removals held.",
    )
    group_removal_min_members: int = Field(
        default=20,
        ge=1,
        description="... when the group has at least this many members.",
    )
    drift_warn_percent: float = Field(
        default=10.0, ge=0, le=100, description="Active users changing by more: a warning."
    )
    drift_error_percent: float = Field(
        default=30.0, ge=0, le=100, description="Active users changing by more: the load stops."
    )
    # The checks validate what changed; the whole of every suite runs after a full read and
    # at least this often (checks/scope.py).
    full_verification_days: int = Field(
        default=7,
        ge=1,
        le=90,
        description="Days between whole runs of every check suite (each sync checks what changed).",
    )
    # Staleness (registry/staleness.py): with no complete read for longer than this, ops are
    # alerted (again daily while it lasts) and the admin is told what to fix. 36 h lets one
    # daily sync fail and be retried by hand within the working day before anyone is paged.
    stale_after_hours: int = Field(
        default=36,
        ge=1,
        le=24 * 90,
        description="Hours without a complete read of Graph before the tenant counts as stale.",
    )
    # Graph's $count is eventually consistent (docs/graph.md): a read and the count taken around it
    # may differ by what was created or deleted meanwhile. A difference within the larger of
    # these two passes (recorded as metadata); a larger one means lost pages and fails the read.
    count_tolerance_objects: int = Field(
        default=20,
        ge=0,
        le=100_000,
        description="Staged users or groups may differ from Graph's $count by this many.",
    )
    count_tolerance_percent: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description="... or by this share of $count, whichever is larger.",
    )
    # Graph change notifications (docs/operations.md): subscriptions on users and groups post
    # to notification_url (the receiver, `sync-pipeline notifications serve`, behind a public
    # https URL); a notification only asks for an incremental sync, the delta read decides.
    change_notifications: bool = Field(
        default=False,
        description="Subscribe to Graph change notifications: a change in Graph starts an "
        "incremental sync within minutes.",
    )
    notification_url: str | None = Field(
        default=None,
        description="The public https:// URL of the receiver Graph posts notifications to.",
    )
    notification_debounce_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Seconds after a tenant's first notification before its sync starts: the "
        "notifications of that window become one sync.",
    )
    # The outbox (docs/architecture.md, docs/operations.md): its events posted to the app's
    # webhook, signed with the secret in webhook_secret_env, by the event_deliveries sensor.
    webhook_url: str | None = Field(
        default=None,
        description="An https:// URL the tenant's outbox events are posted to, one by one.",
    )
    webhook_secret_env: str | None = Field(
        default=None,
        description="The NAME of the environment variable holding the webhook's HMAC secret.",
    )
    webhook_ca_bundle: str | None = Field(
        default=None,
        description="A PEM file of CA certificates the webhook's certificate is checked "
        "against instead of the system's (a private CA).",
    )
    event_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days an outbox event is kept after it was written (and, with a webhook, "
        "delivered); never deleted before delivery.",
    )

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.fullmatch(v):
            msg = "must be lower-case letters, digits and dashes (at most 63 characters)"
            raise ValueError(msg)
        return v

    @field_validator("tenant_id", "client_id")
    @classmethod
    def _guid(cls, v: str) -> str:
        try:
            return str(uuid.UUID(v))
        except ValueError:
            msg = "is not a GUID such as 00000000-0000-0000-0000-000000000000"
            raise ValueError(msg) from None

    @field_validator("client_secret_env", "webhook_secret_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.fullmatch(v):
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits, _), not the secret"
            )
        return v

    @field_validator("graph_base_url")
    @classmethod
    def _graph(cls, v: str) -> str:
        return _https_host(v, GLOBAL_GRAPH)

    @field_validator("authority_host")
    @classmethod
    def _authority(cls, v: str) -> str:
        return _https_host(v, GLOBAL_LOGIN)

    @field_validator("ca_bundle", "webhook_ca_bundle")
    @classmethod
    def _ca_bundle(cls, v: str | None, info: ValidationInfo) -> str | None:
        # Checked where settings come in (import, set, add, the wizard); stored settings are
        # read back unchecked (context check_files=False): a run on another machine, or a CA
        # file removed since, is the run's own pre-flight check, not a reason to hide a tenant.
        if v is None or not (info.context or {}).get("check_files", True):
            return v
        problem = pem_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("sync_time", mode="before")
    @classmethod
    def _time_not_number(cls, v: Any) -> Any:
        # pydantic reads a number as seconds after midnight (180 -> 00:03): never what is meant.
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError("is not a time of day; use HH:MM (24-hour, e.g. 19:00)")
        return v

    @field_validator("client_secret_expires_at", mode="before")
    @classmethod
    def _expiry(cls, v: Any) -> Any:
        # a date alone (what the admin center shows) is the start of that day, UTC; a time
        # without a zone is UTC too
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError("is not a date; use YYYY-MM-DD (e.g. 2027-03-31)")
        if isinstance(v, str):
            text = v.strip()
            try:
                v = (
                    dt.date.fromisoformat(text)
                    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text)
                    else dt.datetime.fromisoformat(text)
                )
            except ValueError:
                raise ValueError(
                    "is not a date; use YYYY-MM-DD (e.g. 2027-03-31) or an ISO date and time"
                ) from None
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            return dt.datetime.combine(v, dt.time(), dt.UTC)
        return v

    @field_validator("client_secret_expires_at")
    @classmethod
    def _expiry_utc(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=dt.UTC)
        return v

    @field_validator("sync_interval", mode="before")
    @classmethod
    def _sync_interval(cls, v: Any) -> Any:
        # YAML 1.1 reads an unquoted `off` as false; the command line passes "off" as text.
        if v is None or v is False:
            return None
        rule = (
            f"must be off or a whole number of minutes from {SYNC_INTERVAL_MIN} to "
            f"{SYNC_INTERVAL_MAX}"
        )
        if isinstance(v, str):
            text = v.strip().lower()
            if text in _OFF_WORDS:
                return None
            if not text.isdigit():
                raise ValueError(rule)
            v = int(text)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(rule)
        if not SYNC_INTERVAL_MIN <= v <= SYNC_INTERVAL_MAX:
            raise ValueError(rule)
        if v % SCHEDULE_TICK_MINUTES:
            raise ValueError(
                f"must be a multiple of {SCHEDULE_TICK_MINUTES} minutes (the schedule ticks every "
                f"{SCHEDULE_TICK_MINUTES} minutes; e.g. {v - v % SCHEDULE_TICK_MINUTES or 5} or "
                f"{v - v % SCHEDULE_TICK_MINUTES + SCHEDULE_TICK_MINUTES})"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            msg = "is not a known IANA time zone (e.g. Europe/London, America/New_York)"
            raise ValueError(msg) from None
        return v

    @field_validator("group_types")
    @classmethod
    def _group_types(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must name at least one of microsoft365, security")
        return sorted(set(v), key=["microsoft365", "security"].index)

    @field_validator("exclude_mailbox_types")
    @classmethod
    def _mailbox_types(cls, v: list[str]) -> list[str]:
        return sorted(set(v), key=MAILBOX_TYPES.index)

    @field_validator("email_deny_list")
    @classmethod
    def _deny_list(cls, v: list[str]) -> list[str]:
        out = []
        for entry in v:
            e = entry.strip()
            if not is_deny_entry(e):
                raise ValueError(f"entry {entry!r} is neither an address nor a *@domain pattern")
            out.append(e)
        return out

    @field_validator("protected_users")
    @classmethod
    def _protected(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for entry in v:
            e = entry.strip()
            if _ADDRESS.fullmatch(e):
                out.append(e.lower())
                continue
            try:
                out.append(str(uuid.UUID(e)))
            except ValueError:
                raise ValueError(
                    f"entry {entry!r} is neither an email address nor a Graph user id (a GUID)"
                ) from None
        return sorted(set(out), key=out.index)

    @field_validator("scope_group_ids", "group_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        out = [i.strip() for i in v]
        if any(not i for i in out):
            raise ValueError("holds an empty group id")
        return out

    @field_validator("group_mapping")
    @classmethod
    def _mapping(cls, v: dict[str, str]) -> dict[str, str]:
        out = {k.strip(): name.strip() for k, name in v.items()}
        bad = [k for k, name in out.items() if not k or not name]
        if bad:
            raise ValueError(f"entry {bad[0]!r} needs a Graph group id and an app group name")
        return out

    @field_validator("notification_url")
    @classmethod
    def _notification_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        why = _https_url(v, path=True)
        if why is not None:
            raise ValueError(
                "must be an https:// URL (Graph posts notifications only over https), e.g. "
                f"https://notify.example.com/graph/notifications: it {why}"
            )
        return v

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not re.match(r"^https://[^/?#\s@]+(/[^#\s]*)?$", v):
            raise ValueError(
                "must be an https:// URL (events carry people's names and addresses), "
                "e.g. https://app.example.com/hooks/directory"
            )
        return v

    @field_validator("admin_email")
    @classmethod
    def _admin_email(cls, v: str | None) -> str | None:
        if v is not None and not _ADDRESS.fullmatch(v.strip()):
            raise ValueError("is not an email address")
        return v.strip() if v else v

    @model_validator(mode="after")
    def _consistent(self) -> TenantSettings:
        if self.auth_mode == "application" and not self.fake_tenant:
            has_secret = self.client_secret_env is not None
            has_cert = self.client_certificate_path is not None
            if not (has_secret or has_cert):
                raise ValueError(
                    "application auth needs client_secret_env or client_certificate_path"
                )
        if self.client_certificate_path and not self.client_certificate_thumbprint:
            raise ValueError("client_certificate_path needs client_certificate_thumbprint")
        if self.user_scope == "selected_groups" and not self.scope_group_ids:
            raise ValueError("user_scope selected_groups needs at least one scope_group_ids entry")
        if self.drift_error_percent < self.drift_warn_percent:
            raise ValueError("drift_error_percent must be at least drift_warn_percent")
        if self.change_notifications and not self.notification_url:
            raise ValueError(
                "change_notifications is true but notification_url is not set: give the "
                "public https:// URL of the receiver (sync-pipeline notifications serve)"
            )
        if self.group_mapping and not self.group_mapping_enabled:
            raise ValueError("group_mapping is set but group_mapping_enabled is false")
        if self.webhook_url and not self.webhook_secret_env:
            raise ValueError(
                "webhook_url is set but webhook_secret_env is not: every delivery is signed; "
                "name the environment variable holding the secret"
            )
        return self

    @property
    def effective_sync_time(self) -> dt.time:
        return self.sync_time or default_sync_time(self.slug)

    def to_document(self) -> dict[str, Any]:
        """The settings as a JSON/YAML-able mapping, defaults left out (round-trips exactly)."""
        return self.model_dump(mode="json", exclude_defaults=True) | {"slug": self.slug}


def parse_settings(
    data: Any, *, source: str = "settings", check_files: bool = True
) -> TenantSettings:
    """Validate one tenant mapping, turning pydantic's errors into ones an admin can act on.

    `check_files` (the default, for settings coming in) also checks that files the settings
    name exist here and hold what they should; stored settings are read back without it.
    """
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: each tenant must be a mapping, got {type(data).__name__}")
    slug = data.get("slug", "<no slug>")
    try:
        return TenantSettings.model_validate(data, context={"check_files": check_files})
    except ValidationError as exc:
        fields = TenantSettings.model_fields
        raise SettingsError(settings_errors.describe(exc, slug, data, source, fields)) from None
