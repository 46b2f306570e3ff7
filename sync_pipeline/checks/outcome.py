"""What a suite found on one tenant: its failed expectations, how bad, a few sample rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR, WARN = "ERROR", "WARN"


@dataclass(frozen=True)
class Failure:
    """One failed expectation: what it expects, how bad, and a few offending rows."""

    expectation: str
    description: str
    severity: str
    unexpected_count: int | None = None
    observed: Any = None
    sample: tuple[dict[str, Any], ...] = ()


@dataclass
class Outcome:
    """The result of one suite on one tenant."""

    suite: str
    rows: int
    evaluated: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def severity(self) -> str:
        """ERROR when any failed expectation guards the load, else WARN (also when passed)."""
        return ERROR if any(f.severity == ERROR for f in self.failures) else WARN
