"""The setup wizard's answers so far: a settings document checked against the settings model
(the same as `tenant set`) at every answer, and asked again when it is refused."""

from __future__ import annotations

from typing import Any

from sync_pipeline.cli.common import console
from sync_pipeline.cli.wizard.prompts import prompt
from sync_pipeline.core import config, settings
from sync_pipeline.core.settings import SettingsError, TenantSettings

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


class Answers:
    """The tenant's settings document as the wizard builds it, and the groups read from Graph."""

    def __init__(self, slug: str, current: TenantSettings | None) -> None:
        self.slug = slug
        self.doc: dict[str, Any] = current.to_document() if current else {"slug": slug}
        self.groups: list[dict[str, Any]] = []
        self.number = 0
        self.active = False  # whether the daily sync was saved on

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
        self,
        key: str,
        text: str,
        convert: Any = str,
        also: dict[str, Any] | None = None,
        **options: Any,
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
