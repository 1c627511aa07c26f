"""Read-only check of a journal file: seq continuity and the whole hash chain (invariant 4)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from edged.chain import entry_bytes, entry_hash
from edged.errors import ChainError, JournalError
from edged.journal import state
from edged.journal.preflight import check_wal_present
from edged.journal.readonly import connect_readonly


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a successful check covered."""

    path: str
    store_id: str
    terminal_id: str
    first_seq: int
    last_seq: int
    entries: int
    anchor_seq: int
    acked_upto: int


def _connect(path: Path) -> sqlite3.Connection:
    # Read-only: the daemon may be running; WAL lets us read a consistent snapshot.
    return connect_readonly(path)


def _rows(conn: sqlite3.Connection) -> Iterator[tuple[int, str, str, str, str, bytes, bytes]]:
    yield from conn.execute(
        "SELECT seq, id, receipt_no, created_at, sale, prev_hash, hash FROM entries ORDER BY seq"
    )


def verify_journal(path: str | Path) -> VerifyReport:
    """Check the journal; raise ChainError naming the first bad seq, WalLostError if its -wal
    is lost (sales after the main file's last checkpoint are missing), or JournalError."""
    path = Path(path)
    with closing(_connect(path)) as conn:
        try:
            conn.execute("BEGIN")  # one snapshot for the whole walk
            check_wal_present(path, conn)
            (identity,) = conn.execute("SELECT store_id, terminal_id FROM identity").fetchall()
            ((acked_upto, anchor_seq, anchor_hash),) = conn.execute(
                "SELECT acked_upto, anchor_seq, anchor_hash FROM outbox"
            ).fetchall()
            expected_seq, prev = anchor_seq + 1, bytes(anchor_hash)
            count = 0
            for seq, sale_id, receipt_no, created_at, sale, prev_hash, digest in _rows(conn):
                if seq != expected_seq:
                    problem = (
                        f"expected seq {expected_seq} next, found {seq}: "
                        f"entries {expected_seq}..{seq - 1} are missing"
                        if seq > expected_seq
                        else f"out of order after seq {expected_seq - 1}"
                    )
                    raise ChainError(expected_seq if seq > expected_seq else seq, problem)
                if bytes(prev_hash) != prev:
                    raise ChainError(
                        seq,
                        "prev_hash does not match the previous entry's hash (removed, "
                        "reordered or altered entry before it)",
                    )
                body = entry_bytes(seq, sale_id, receipt_no, created_at, sale.encode())
                if entry_hash(prev, body) != bytes(digest):
                    raise ChainError(seq, "hash does not match the entry's content (altered)")
                prev = bytes(digest)
                expected_seq += 1
                count += 1
        except sqlite3.Error as exc:
            raise state.describe(path, exc) from None
        except ValueError as exc:
            raise JournalError(f"journal {path}: not an edged journal ({exc})") from None
    return VerifyReport(
        path=str(path),
        store_id=identity[0],
        terminal_id=identity[1],
        first_seq=anchor_seq + 1,
        last_seq=expected_seq - 1,
        entries=count,
        anchor_seq=anchor_seq,
        acked_upto=acked_upto,
    )
