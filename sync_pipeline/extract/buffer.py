"""Staging writes gathered per table and COPYed in thousands, in the readers' order."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sync_pipeline.core import db
from sync_pipeline.extract.staging import StagingWriter


class BufferedWriter(StagingWriter):
    """Rows gathered per table and COPYed in thousands: one COPY per page costs a round trip
    each, which made the database, not Graph, the bottleneck. Deletes flush first, so rows
    and deletes still reach Postgres in the order the readers sent them.

    Buffered rows are kept by their object (a row's first id: the user of a licence, the group
    of a membership), so a repeat or a removal later in a full read takes them back without a
    flush (`discard`)."""

    FLUSH_ROWS = 20_000

    def __init__(self, conn: sa.Connection, tenant: str) -> None:
        super().__init__(conn, tenant)
        self.pending: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
        self.buffered: dict[str, int] = {}

    def copy(self, table: str, rows: Any) -> int:
        buf = self.pending.setdefault(table, {})
        n = self.buffered.get(table, 0)
        for row in rows:
            buf.setdefault(row[1], []).append(row)
            n += 1
        self.buffered[table] = n
        if n >= self.FLUSH_ROWS:
            return self._flush_table(table)
        return 0

    def _flush_table(self, table: str) -> int:
        rows = [r for rs in self.pending.pop(table, {}).values() for r in rs]
        self.buffered[table] = 0
        return super().copy(table, rows) if rows else 0

    def flush(self) -> None:
        for table in list(self.pending):
            self._flush_table(table)

    def discard(self, tables: dict[str, str], ids: list[str]) -> None:
        """Take these objects' rows back: from the buffer, and from the tables they may have
        been flushed to ({table: its staging/delete_* statement by object id})."""
        if not ids:
            return
        for table, statement in tables.items():
            buf = self.pending.get(table, {})
            for oid in ids:
                self.buffered[table] = self.buffered.get(table, 0) - len(buf.pop(oid, ()))
            super().delete(statement, ids)

    def discard_members(self, ids: list[str]) -> None:
        """These objects leave every group they were buffered or staged as members of."""
        wanted = set(ids)
        for rows in self.pending.get("group_members", {}).values():
            kept = [r for r in rows if r[2] not in wanted]
            self.buffered["group_members"] -= len(rows) - len(kept)
            rows[:] = kept
        super().delete("delete_memberships_of", ids)

    def clear(self, table: str) -> None:
        self.flush()
        if table != "subscribed_skus":  # read whole every time; the transform never reads it
            self.run("mark_full")
        super().clear(table)

    def delete(self, statement: str, ids: list[str]) -> None:
        if ids:
            self.flush()
            super().delete(statement, ids)

    def delete_pairs(self, pairs: list[tuple[str, str]]) -> None:
        if pairs:
            self.flush()
            super().delete_pairs(pairs)

    def run(self, statement: str, **params: Any) -> sa.CursorResult[Any]:
        """A staging/* statement over what is staged so far (the buffer flushed first)."""
        self.flush()
        return self.conn.execute(db.q(f"extract/{statement}"), {"t": self.tenant, **params})
