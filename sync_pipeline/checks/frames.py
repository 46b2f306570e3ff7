"""The rows a suite reads, as a DataFrame: a statement of `sql/checks/`, only the columns
the suite reads (relation tables summed up per group in SQL, so frames stay the size of the
user or group list)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from sync_pipeline.checks import gxrun
from sync_pipeline.core import db

# Planner settings for the statements over a whole membership list (1.2-1.4 M rows at 100k
# users), which read it in index order and look up each member once (see their SQL):
# - random_page_cost 1.1 instead of 4: the pages were written or read by this very run and
#   are in memory. At 4, a table whose pages are 85 % all-visible (after a day's changes) was
#   planned as a seq scan hashing every membership: 0.5-0.6 s instead of 0.2 s.
# - work_mem: room to hash ~100k keys without spilling batches to disk (the default is 4 MB).
# - jit off: a plan this size crosses jit_above_cost, and compiling it (~30 ms) is not repaid.
MEMBERSHIP_PLANNER = {"random_page_cost": "1.1", "work_mem": "64MB", "jit": "off"}
MEMBERSHIP_STATEMENTS = frozenset(
    {
        "staging_members",
        "snapshot_memberships",
        "staging_members_changed",
    }
)


def load(conn: sa.Connection, name: str, params: dict[str, Any]) -> pd.DataFrame:
    """Rows of sql/checks/<name>.sql as a DataFrame (only the columns the suite reads)."""
    gxrun.context()  # waits for warm_up's thread, if any: no pandas work while it imports
    tuned = name in MEMBERSHIP_STATEMENTS
    if tuned:
        _set_planner(conn, MEMBERSHIP_PLANNER)
    result = conn.execute(db.q(f"checks/{name}"), params)
    keys = list(result.keys())
    # The driver's plain tuples, not SQLAlchemy Rows (these columns need no result
    # processing): at 100k rows Row objects and a column-wise build took ~0.35 s, this
    # ~0.07 s. dtype=object keeps None as None and booleans as booleans for the suites.
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    if tuned:  # back to the server's defaults for whatever runs next in this transaction
        _set_planner(conn, dict.fromkeys(MEMBERSHIP_PLANNER, None))
    return pd.DataFrame(rows, columns=keys, dtype=object)


def _set_planner(conn: sa.Connection, settings: Mapping[str, str | None]) -> None:
    """SET LOCAL each setting, for this transaction only (None: back to the default)."""
    for name, value in settings.items():
        if value is None:
            conn.execute(sa.text(f"RESET {name}"))  # names are this module's constants
        else:
            statement = sa.text("SELECT set_config(:name, :value, true)")
            conn.execute(statement, {"name": name, "value": value})
