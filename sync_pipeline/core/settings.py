"""A tenant's sync settings as people hand them to us: `tenants:` YAML files, `key=value`
changes from the command line, deny lists from a CSV of addresses.

The model itself (fields and validators) is in settings_model.py; its names are re-exported
here, so `sync_pipeline.core.settings` stays the one import for settings. No Dagster imports
here (ground floor).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml

from sync_pipeline.core import textfiles
from sync_pipeline.core.settings_model import (
    GLOBAL_GRAPH,
    GLOBAL_LOGIN,
    EmailMethod,
    GroupType,
    SettingsError,
    TenantSettings,
    default_sync_time,
    is_deny_entry,
    parse_settings,
    pem_problem,
)

__all__ = [
    "GLOBAL_GRAPH",
    "GLOBAL_LOGIN",
    "EmailMethod",
    "GroupType",
    "SettingsError",
    "TenantSettings",
    "assign",
    "default_sync_time",
    "deny_list_from_csv",
    "dump_yaml",
    "is_deny_entry",
    "load_yaml",
    "parse_assignments",
    "parse_settings",
    "pem_problem",
    "read_file",
]


def read_file(path: Path, *, what: str = "the file") -> str:
    """A settings or deny-list file's text: UTF-8, or SettingsError naming the bad byte."""
    try:
        return textfiles.read_utf8(path, what=what)
    except textfiles.TextFileError as exc:
        raise SettingsError(str(exc)) from None


def _yaml(text: str, source: str) -> Any:
    try:
        return textfiles.load_yaml(text)
    except textfiles.DuplicateKeyError as exc:
        raise SettingsError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SettingsError(f"{source}: not valid YAML: {line}{problem}") from None


def load_yaml(text: str, *, source: str = "settings file") -> list[TenantSettings]:
    """Parse a `tenants:` YAML document; every tenant valid or nothing (raises SettingsError).

    A key given twice in one mapping is refused (naming it and its lines), not last-wins."""
    doc = _yaml(text, source)
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
            return textfiles.load_yaml(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    if origin is dict:
        if text.startswith("{"):
            return textfiles.load_yaml(text)
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
            if not is_deny_entry(cell):
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
