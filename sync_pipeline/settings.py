"""A tenant's sync settings: the setup wizard's steps, validated by one pydantic model.

Errors name the tenant, the field and the value, so that an admin can fix them without
reading code. No Dagster imports here (ground floor).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import uuid
from typing import Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

GLOBAL_GRAPH = "https://graph.microsoft.com"
GLOBAL_LOGIN = "https://login.microsoftonline.com"

EmailMethod = Literal["upn", "mail", "mail_then_upn", "primary_smtp", "primary_smtp_then_upn"]
GroupType = Literal["microsoft365", "security"]

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN_PATTERN = re.compile(r"^\*@[^@\s*]+\.[^@\s*]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SettingsError(ValueError):
    """Bad tenant settings: the message names the tenant, the field and the value."""


def default_sync_time(slug: str) -> dt.time:
    """A time of day spread over 00:00-05:59 by the slug's hash, stable across processes."""
    minutes = int(hashlib.sha256(slug.encode()).hexdigest(), 16) % (6 * 60)
    return dt.time(minutes // 60, minutes % 60)


def _https_host(value: str, field: str) -> str:
    value = value.rstrip("/")
    m = re.match(r"^https://[^/?#\s]+$", value)
    if not m:
        raise ValueError(
            f"{field} must be an https:// host without a path (e.g. {GLOBAL_GRAPH}); "
            "the client adds /v1.0 itself"
        )
    return value


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

    # step 3..11
    email_method: EmailMethod = "upn"
    include_groups: bool = True
    user_scope: Literal["all", "selected_groups"] = "all"
    scope_group_ids: list[str] = Field(default_factory=list)
    group_mapping_enabled: bool = False
    group_types: list[GroupType] = Field(default_factory=lambda: ["microsoft365", "security"])
    group_ids: list[str] = Field(default_factory=list)
    group_mapping: dict[str, str] = Field(default_factory=dict)
    exclude_unlicensed: bool = False
    import_managers: bool = False
    email_deny_list: list[str] = Field(default_factory=list)

    # beyond the wizard
    include_disabled: bool = False
    include_guests: bool = False
    admin_email: str | None = None
    max_deactivation_percent: float = Field(default=10.0, ge=0, le=100)
    max_deactivations: int = Field(default=500, ge=0)
    drift_warn_percent: float = Field(
        default=10.0, ge=0, le=100, description="Active users changing by more: a warning."
    )
    drift_error_percent: float = Field(
        default=30.0, ge=0, le=100, description="Active users changing by more: the load stops."
    )
    # Graph's $count is eventually consistent (GRAPH.md): a read and the count taken around it
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

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError("use lower-case letters, digits and dashes (at most 63 characters)")
        return v

    @field_validator("tenant_id", "client_id")
    @classmethod
    def _guid(cls, v: str) -> str:
        try:
            return str(uuid.UUID(v))
        except ValueError:
            msg = "must be a GUID such as 00000000-0000-0000-0000-000000000000"
            raise ValueError(msg) from None

    @field_validator("client_secret_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits, _), not the secret"
            )
        return v

    @field_validator("graph_base_url")
    @classmethod
    def _graph(cls, v: str) -> str:
        return _https_host(v, "graph_base_url")

    @field_validator("authority_host")
    @classmethod
    def _authority(cls, v: str) -> str:
        return _https_host(v, "authority_host")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            msg = "unknown IANA time zone (e.g. Europe/London, America/New_York)"
            raise ValueError(msg) from None
        return v

    @field_validator("group_types")
    @classmethod
    def _group_types(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("choose at least one of microsoft365, security")
        return sorted(set(v), key=["microsoft365", "security"].index)

    @field_validator("email_deny_list")
    @classmethod
    def _deny_list(cls, v: list[str]) -> list[str]:
        out = []
        for entry in v:
            e = entry.strip()
            if not (_ADDRESS.match(e) and "*" not in e) and not _DOMAIN_PATTERN.match(e):
                raise ValueError(f"entry {entry!r} is neither an address nor a *@domain pattern")
            out.append(e)
        return out

    @field_validator("scope_group_ids", "group_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        out = [i.strip() for i in v]
        if any(not i for i in out):
            raise ValueError("group ids must not be empty")
        return out

    @field_validator("group_mapping")
    @classmethod
    def _mapping(cls, v: dict[str, str]) -> dict[str, str]:
        out = {k.strip(): name.strip() for k, name in v.items()}
        bad = [k for k, name in out.items() if not k or not name]
        if bad:
            raise ValueError(f"entry {bad[0]!r} needs a Graph group id and an app group name")
        return out

    @field_validator("admin_email")
    @classmethod
    def _admin_email(cls, v: str | None) -> str | None:
        if v is not None and not _ADDRESS.match(v.strip()):
            raise ValueError("must be an email address")
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
        if self.group_mapping and not self.group_mapping_enabled:
            raise ValueError("group_mapping is set but group_mapping_enabled is false")
        return self

    @property
    def effective_sync_time(self) -> dt.time:
        return self.sync_time or default_sync_time(self.slug)

    def to_document(self) -> dict[str, Any]:
        """The settings as a JSON/YAML-able mapping, defaults left out (round-trips exactly)."""
        return self.model_dump(mode="json", exclude_defaults=True) | {"slug": self.slug}


def parse_settings(data: Any, *, source: str = "settings") -> TenantSettings:
    """Validate one tenant mapping, turning pydantic's errors into ones an admin can act on."""
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: each tenant must be a mapping, got {type(data).__name__}")
    slug = data.get("slug", "<no slug>")
    try:
        return TenantSettings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, slug, data, source)) from None


def _describe(exc: ValidationError, slug: str, data: dict[str, Any], source: str) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(tenant)"
        top = err["loc"][0] if err["loc"] else None
        value = data.get(top) if isinstance(top, str) else None
        if err["type"] == "extra_forbidden":
            lines.append(f"tenant {slug}: unknown setting {field!r} (check the spelling)")
        elif err["type"] == "missing":
            lines.append(f"tenant {slug}: {field} is required")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if value is None else f" = {value!r}"
            lines.append(f"tenant {slug}: {field}{shown}: {msg}")
    return f"{source}: " + "; ".join(lines)


def load_yaml(text: str, *, source: str = "settings file") -> list[TenantSettings]:
    """Parse a `tenants:` YAML document; every tenant valid or nothing (raises SettingsError)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tenants"), list):
        raise SettingsError(f"{source}: expected a top-level 'tenants:' list")
    tenants = [parse_settings(item, source=source) for item in doc["tenants"]]
    slugs = [t.slug for t in tenants]
    dupes = sorted({s for s in slugs if slugs.count(s) > 1})
    if dupes:
        raise SettingsError(f"{source}: tenant slug listed twice: {', '.join(dupes)}")
    return tenants


def dump_yaml(tenants: list[TenantSettings]) -> str:
    return yaml.safe_dump(
        {"tenants": [t.to_document() for t in tenants]}, sort_keys=False, allow_unicode=True
    )


# -- changing one setting from the command line ------------------------------------------------

_NONE_WORDS = frozenset({"null", "none", "~"})


def _coerce(key: str, raw: str) -> Any:
    """A command-line string as the value the model expects for `key`.

    Scalars go to pydantic as strings (its lax mode turns "true", "10", "03:00" into bool,
    int, time); lists take "a,b" or YAML "[a, b]"; mappings take YAML "{id: Name}" or
    "id=Name,id2=Name2". YAML is not used for scalars: it reads 03:00 as the integer 180.
    """
    annotation = TenantSettings.model_fields[key].annotation
    origin = get_origin(annotation)
    text = raw.strip()
    if origin is list:
        if text.startswith("["):
            return yaml.safe_load(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    if origin is dict:
        if text.startswith("{"):
            return yaml.safe_load(text)
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("write mappings as id=App group name,id2=Other name")
        return {k.strip(): v.strip() for k, v in pairs}
    if text.lower() in _NONE_WORDS and type(None) in get_args(annotation):
        return None
    return text


def assign(current: TenantSettings, assignments: dict[str, str]) -> TenantSettings:
    """New settings with `key=value` assignments applied, validated as a whole.

    An empty value puts the setting back to its default. Raises SettingsError naming the
    tenant, the setting and the value.
    """
    slug = current.slug
    doc = current.to_document()
    for key, raw in assignments.items():
        if key == "slug":
            raise SettingsError(f"tenant {slug}: the slug cannot be changed with set")
        if key not in TenantSettings.model_fields:
            known = ", ".join(k for k in TenantSettings.model_fields if k != "slug")
            raise SettingsError(f"tenant {slug}: unknown setting {key!r} (known: {known})")
        if raw.strip() == "":
            doc.pop(key, None)
            continue
        try:
            doc[key] = _coerce(key, raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise SettingsError(f"tenant {slug}: {key} = {raw!r}: {exc}") from None
    return parse_settings(doc, source="settings")


def parse_assignments(pairs: list[str] | tuple[str, ...], slug: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"tenant {slug}: {pair!r} is not key=value")
        out[key.strip()] = value
    return out


# -- the deny list from a CSV of addresses ----------------------------------------------------


def deny_list_from_csv(text: str, *, source: str, slug: str) -> list[str]:
    """Every address (or *@domain pattern) of a CSV, any column; a header row is skipped.

    A cell is an entry when it contains "@"; the first row is a header when none of its cells
    does. Any other cell with "@" that is not a valid entry is refused, with its line.
    """
    entries: list[str] = []
    seen: set[str] = set()
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row if c.strip()]
        if line == 1 and not any("@" in c for c in cells):
            continue
        for cell in cells:
            if "@" not in cell:
                continue
            if not ((_ADDRESS.match(cell) and "*" not in cell) or _DOMAIN_PATTERN.match(cell)):
                raise SettingsError(
                    f"tenant {slug}: email_deny_list: {source} line {line}: {cell!r} is neither "
                    "an address nor a *@domain pattern"
                )
            if cell.lower() not in seen:
                seen.add(cell.lower())
                entries.append(cell)
    if not entries:
        raise SettingsError(f"tenant {slug}: email_deny_list: {source} holds no address")
    return entries
