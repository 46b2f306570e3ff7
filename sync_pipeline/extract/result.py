"""What one extraction did: modes, changes, staged counts, the `$count` reconciliation and
the groups whose members Graph refused, for the materialisation metadata."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Extraction:
    """What one extraction did, for the materialisation metadata."""

    mode: dict[str, str] = field(default_factory=dict)  # users/groups: full | incremental | resync
    full_read: bool = False  # both families read whole (recorded in sync.full_reads)
    changes: Counter[str] = field(default_factory=Counter)
    staged: dict[str, int] = field(default_factory=dict)
    graph_counts: dict[str, int] = field(default_factory=dict)
    # $count reconciliation per entity: exact | within_tolerance | unsupported
    count_check: dict[str, str] = field(default_factory=dict)
    count_offset: dict[str, int] = field(default_factory=dict)  # staged minus $count after
    count_tolerance: dict[str, int] = field(default_factory=dict)
    member_types: Counter[str] = field(default_factory=Counter)
    # mailbox types (extract/purposes.py): asked, read, unreadable, skipped_known, type_<x>;
    # empty when the tenant's exclude_mailbox_types is (nothing was asked)
    purposes: Counter[str] = field(default_factory=Counter)
    # groups whose members Graph refused: id -> name, permission, status, code, request_id
    unreadable: dict[str, dict[str, Any]] = field(default_factory=dict)
