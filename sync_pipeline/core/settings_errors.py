"""pydantic's validation errors, said in the project's words.

"Input should be a valid time" tells an admin neither which tenant nor what to write; every
error here names the tenant, the setting and the value, and says what is expected, e.g.
`tenant acme: sync_time '7pm' is not a time of day; use HH:MM (24-hour, e.g. 19:00)`.
Custom validators in settings.py raise predicates ("is not ...", "must be ...") that follow
the setting and its value. No Dagster imports here.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

# pydantic error type -> what the value is not, or must be
_PHRASES = {
    "bool_parsing": "is not true or false",
    "bool_type": "is not true or false",
    "time_parsing": "is not a time of day; use HH:MM (24-hour, e.g. 19:00)",
    "time_type": "is not a time of day; use HH:MM (24-hour, e.g. 19:00)",
    "int_parsing": "is not a whole number",
    "int_type": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "finite_number": "is not a finite number",
    "string_type": "must be text (quote it in YAML)",
    "list_type": "must be a list (YAML: [a, b]; on the command line: a,b)",
    "dict_type": "must be a mapping (YAML: {graph-group-id: App group name})",
}
_RANGE = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}


# An Entra ID client secret: ~40 characters of letters, digits and ~._- with a "~" in them;
# anything long without spaces that mixes letters and digits is treated the same way.
_SECRET_SHAPED = re.compile(
    r"(?=[^\s]*~)[A-Za-z0-9~._-]{30,}|(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9+=_~.-]{32,}"
)
SHOWN_CHARACTERS = 120


def looks_secret(text: str) -> bool:
    """Whether `text` is shaped like a credential (an error message never echoes one)."""
    return bool(_SECRET_SHAPED.fullmatch(text.strip()))


def _show(value: Any, field: str = "") -> str:
    """A value as an error message may show it: never one shaped like a secret (a secret
    typed where client_secret_env wants a variable name), never more than
    SHOWN_CHARACTERS (a whole structure's repr can be huge), control characters escaped
    (repr)."""
    if value is None:
        return "null"
    if isinstance(value, str) and (looks_secret(value) or ("secret" in field and len(value) > 24)):
        return "(a value shaped like a secret: not shown)"
    text = repr(value)
    if len(text) > SHOWN_CHARACTERS:
        return f"{text[: SHOWN_CHARACTERS - 20]}…' ({len(str(value))} characters)"
    return text


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if part == "[key]":
            break  # the key itself, already reached
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _choices(info: FieldInfo) -> str:
    annotation = info.annotation
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    options = [a for a in get_args(annotation) if get_origin(annotation) is Literal]
    return ", ".join(str(o) for o in options)


def _bounds(info: FieldInfo) -> str:
    low = next((getattr(m, "ge", None) for m in info.metadata if hasattr(m, "ge")), None)
    high = next((getattr(m, "le", None) for m in info.metadata if hasattr(m, "le")), None)
    if low is not None and high is not None:
        return f"must be between {low} and {high}"
    return f"must be at least {low}" if low is not None else f"must be at most {high}"


def _one(err: ErrorDetails, data: dict[str, Any], fields: dict[str, FieldInfo]) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if not loc:  # a rule across settings (model validator): its message says it all
        return err["msg"].removeprefix("Value error, ")
    field = str(loc[0])
    if kind == "extra_forbidden":
        near = difflib.get_close_matches(field, list(fields), n=1)
        hint = f"did you mean {near[0]!r}?" if near else "check the spelling"
        return f"unknown setting {field!r} ({hint})"
    if kind == "missing":
        return f"{field} is required"
    # an item of a list or mapping: name the setting, then the item
    subject = field if len(loc) == 1 else f"{field} entry"
    value = _value_at(data, loc)
    if loc[-1] == "[key]":
        subject, value = f"{field} key", loc[-2]
    info = fields.get(field)
    if kind == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
        if msg.startswith("entry "):  # the validator named the offending entry itself
            return f"{field} {msg}"
        return f"{subject} {_show(value, field)} {msg}"
    if kind == "literal_error" and info is not None:
        return f"{subject} {_show(value, field)} is not one of: {_choices(info)}"
    if kind in _RANGE and info is not None:
        return f"{subject} {_show(value, field)} {_bounds(info)}"
    phrase = _PHRASES.get(kind)
    if phrase is None:  # a kind not met before: still the setting and the value first
        phrase = "is not valid: " + err["msg"][:1].lower() + err["msg"][1:]
    return f"{subject} {_show(value, field)} {phrase}"


def describe(
    exc: ValidationError, slug: str, data: dict[str, Any], source: str, fields: dict[str, FieldInfo]
) -> str:
    """One readable line per error, each naming the tenant: `source: tenant slug: ...; ...`."""
    shown = slug if slug.isprintable() else repr(slug)  # a slug read from a file, not valid yet
    lines = [f"tenant {shown}: {_one(err, data, fields)}" for err in exc.errors()]
    return f"{source}: " + "; ".join(lines)
