"""Environment variables: read in one module, each listed in `.env.example`.

The configuration module (`sync_pipeline/core/config.py`) is the only one that touches
`os.environ`; a read anywhere else would be a variable documented nowhere. The parse below
finds `os.environ` and `os.getenv` in the package's source by its syntax tree, so a comment or
a string that mentions them does not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import sync_pipeline
from sync_pipeline.core import config

PACKAGE = Path(sync_pipeline.__file__).parent
ENV_EXAMPLE = PACKAGE.parent / ".env.example"


def environment_uses(tree: ast.AST) -> list[int]:
    """Lines that use os.environ or os.getenv (as attributes of `os`, or imported by name)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "putenv"}:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in {"environ", "getenv", "putenv"} for alias in node.names):
                lines.append(node.lineno)
    return sorted(lines)


def test_only_the_configuration_module_touches_the_environment():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "core" / "config.py":
            continue
        found = environment_uses(ast.parse(path.read_text(), str(path)))
        if found:
            offenders[str(path.relative_to(PACKAGE))] = found
    assert offenders == {}, f"read the environment through sync_pipeline.core.config: {offenders}"


def test_the_finder_sees_a_read():
    """The check above can fail: a module reading os.environ is found."""
    tree = ast.parse("import os\nx = os.environ.get('X')\nfrom os import getenv\n")
    assert environment_uses(tree) == [2, 3]


def test_every_variable_is_listed_in_env_example():
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    missing = sorted(set(config.VARIABLES) - listed)
    assert missing == [], f".env.example lacks {missing}"
    assert len(set(config.VARIABLES)) == len(config.VARIABLES), "a variable is named twice"
