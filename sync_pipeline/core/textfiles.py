"""Reading the files people hand us: UTF-8 or refused, and YAML that says what it means.

PyYAML's safe_load lets the last of two equal keys win silently, and reads an unquoted 19:00
as the integer 1140 (YAML 1.1's base-60 numbers). A settings file is a contract an admin
wrote by hand, so both are refused or read as written. No Dagster imports here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

# C0 and C1 control characters (ESC and CSI start every terminal escape sequence; NUL, CR and
# backspace rewrite what a terminal shows, CR and LF split an email header) and the
# bidirectional overrides that make a name read differently from what it is. Hand-written:
# rich escapes markup and the email package refuses line breaks, neither strips these.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def inert(text: object) -> str:
    """Text from outside (Graph, settings, files) as a terminal, an email header or Dagster
    metadata may show it: every control character, escape-sequence introducer and bidi
    override replaced by U+FFFD (a newline or tab by a space); every other character,
    Unicode included, kept."""
    return _UNSAFE.sub(lambda m: " " if m.group() in "\n\t" else "\ufffd", str(text))


def markdown_cell(text: object) -> str:
    """`inert` text for one cell of a markdown table (Dagster metadata): pipes escaped."""
    return inert(text).replace("|", "\\|")


class TextFileError(ValueError):
    """A file or text that cannot be read as given; the message names where and why."""


def read_utf8(path: Path, *, what: str = "the file") -> str:
    """The file's text as UTF-8 (a byte-order mark is dropped), or TextFileError naming the
    first byte that is not UTF-8 and its line. Never a guess at another encoding: a Latin-1
    address read as UTF-8 would be a different address."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TextFileError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            f"save {what} as UTF-8 and try again"
        ) from None


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, line: int) -> None:
        super().__init__(
            f"line {line}: key {key!r} is given twice in one mapping (first on line "
            f"{first_line}); remove one, the last would otherwise silently win"
        )


class _NoBase60:
    """An implicit resolver's pattern that never matches a value with a colon: YAML 1.1's
    base-60 ints and floats (19:00 -> 1140) stay strings."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern

    def match(self, value: str) -> re.Match[str] | None:
        return None if ":" in value else self.pattern.match(value)


# A settings file is a few kilobytes per tenant; a file far larger is a mistake or an attack.
MAX_YAML_BYTES = 4 * 1024 * 1024


class AliasError(yaml.YAMLError):
    def __init__(self, line: int) -> None:
        super().__init__(
            f"line {line}: an alias (*name) is only accepted after a merge key (<<: *name); "
            "write the value out (aliases can make a small file expand into billions of items)"
        )


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (naming the key and both lines), reads 19:00 as
    the string "19:00", and takes an alias only as a merge key's value (`<<: *base`): an
    alias anywhere else is refused, so a "billion laughs" file (aliases of aliases) cannot
    expand in whatever walks the result (pydantic, an error message's repr)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            merge = (
                isinstance(parent, yaml.MappingNode)
                and isinstance(index, yaml.ScalarNode)
                and index.tag == "tag:yaml.org,2002:merge"
            )
            if not merge:
                raise AliasError(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)


StrictLoader.yaml_implicit_resolvers = {
    first: [
        (tag, _NoBase60(rx) if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") else rx)
        for tag, rx in resolvers
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` then an override is YAML's own way to change a key
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            continue  # an unhashable key: construct_mapping says so itself
        line = key_node.start_mark.line + 1
        if first is not None:
            raise DuplicateKeyError(key, first, line)
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str) -> Any:
    """One YAML document read with StrictLoader (raises yaml.YAMLError: DuplicateKeyError,
    AliasError, or a text over MAX_YAML_BYTES)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise yaml.YAMLError(
            f"the text is over {MAX_YAML_BYTES // (1024 * 1024)} MB: not a settings file"
        )
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: no arbitrary objects
