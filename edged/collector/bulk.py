"""A batch's new sales into `transactions`, at what a bulk load costs on each database.

SQLite takes them with multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING` (dialect.py).
On PostgreSQL that statement costs twice a COPY: a speculative insertion per row and unique
index (`scripts/bench drain`). So there the seqs already stored (a resend) are found first with
one index read, and the rest go in with one binary COPY; nobody else writes this terminal's
seqs meanwhile (its advisory lock, dialect.lock_terminals). A sale id stored already (a retry
after a purge, a till that reused an id, or the same id twice in the batch), rare, makes the
COPY fail on the unique index: it is undone to its savepoint and the rows take the INSERT path,
which tells each conflict apart as always. Looking the ids up first cost every batch more
than that path costs the rare one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edged.collector.dialect import Conn, Dialect, PgConn, TerminalKey

TABLE = "transactions"
_SAVEPOINT = "bulk_copy"
_EXISTING_SEQS = (
    f"SELECT seq FROM {TABLE} WHERE store_id = ? AND terminal_id = ? AND seq BETWEEN ? AND ?"
)


def insert_sales(
    conn: Conn,
    dialect: Dialect,
    key: TerminalKey,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
) -> set[int]:
    """Insert the `rows` of one terminal (in seq order; `columns` include `seq`) that
    conflict with nothing stored, the lowest seq first for a sale id given twice; return the
    seqs inserted. Rows left out are judged by the caller (duplicates, conflicts)."""
    if not rows:
        return set()
    if not dialect.postgres:
        return set(dialect.insert_many(conn, TABLE, columns, rows, "seq"))
    assert isinstance(conn, PgConn)
    at_seq = [name for name, _ in columns].index("seq")
    first, last = rows[0][at_seq], rows[-1][at_seq]
    stored = {seq for (seq,) in conn.execute(_EXISTING_SEQS, (*key, first, last))}
    new = [row for row in rows if row[at_seq] not in stored]
    if not new:
        return set()
    conn.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        conn.copy_rows(TABLE, columns, new)
    except dialect.data_errors:  # a sale id stored already, or a value the INSERT refuses too
        conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
        conn.execute(f"RELEASE {_SAVEPOINT}")
        return set(dialect.insert_many(conn, TABLE, columns, rows, "seq"))
    conn.execute(f"RELEASE {_SAVEPOINT}")
    return {row[at_seq] for row in new}
