"""Read-side diagnostics of a collector database: per terminal progress, gaps and problems."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.collector.dburl import DbTarget, as_target
from edged.collector.dialect import SQLITE, Conn, Dialect, PgConn, postgres
from edged.collector.followup import offline_payments
from edged.collector.rebuild import permanent_gaps, rebuild_report
from edged.collector.schema import BUSY_TIMEOUT_MS, SCHEMA_VERSION, CollectorStoreError
from edged.collector.walk import held_after

MAX_REPORTED_GAPS = 100


@dataclass(frozen=True, slots=True)
class TerminalReport:
    """One terminal as the store sees it; `gaps` are inclusive (from, to) ranges of missing seq
    (the terminal still has to send them), `lost` those its journal lost and declared so."""

    store_id: str
    terminal_id: str
    contiguous_upto: int
    max_seq: int
    entries: int
    gaps: list[tuple[int, int]]
    chain_broken_at: int | None
    duplicates: int
    problems: int
    held: int
    lost: list[tuple[int, int]]
    first_seen_at: str
    last_seen_at: str
    rebuild: dict[str, Any] | None = None  # the latest resend request and its progress
    permanent_gaps: list[dict[str, Any]] = field(default_factory=list)  # purged at the terminal

    def as_dict(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "terminal_id": self.terminal_id,
            "contiguous_upto": self.contiguous_upto,
            "max_seq": self.max_seq,
            "entries": self.entries,
            "gaps": [list(g) for g in self.gaps],
            "chain_broken_at": self.chain_broken_at,
            "duplicates": self.duplicates,
            "problems": self.problems,
            "held": self.held,
            "lost": [list(g) for g in self.lost],
            "first_seen_at": self.first_seen_at,
            "last_seen_at": self.last_seen_at,
            "rebuild": self.rebuild,
            "permanent_gaps": self.permanent_gaps,
        }


def _gaps(conn: Conn, store_id: str, terminal_id: str, upto: int) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    expect = upto + 1
    for seq in held_after(conn, (store_id, terminal_id), upto):
        if seq > expect:
            gaps.append((expect, seq - 1))
            if len(gaps) >= MAX_REPORTED_GAPS:
                break
        expect = seq + 1
    return gaps


def _lost(conn: Conn, store_id: str, terminal_id: str) -> list[tuple[int, int]]:
    rows = conn.execute(
        "SELECT seq_from, seq_to FROM lost WHERE store_id = ? AND terminal_id = ?"
        " ORDER BY seq_from LIMIT ?",
        (store_id, terminal_id, MAX_REPORTED_GAPS),
    )
    return [(first, to) for first, to in rows]


def terminal_report(conn: Conn) -> list[TerminalReport]:
    """Per-terminal report from an open connection (read-only use is fine)."""
    rows = conn.execute(
        "SELECT store_id, terminal_id, contiguous_upto, max_seq, entries, chain_broken_at,"
        " duplicates, problems, held, first_seen_at, last_seen_at FROM terminals"
        " ORDER BY store_id, terminal_id"
    ).fetchall()
    return [
        TerminalReport(
            store_id=r[0],
            terminal_id=r[1],
            contiguous_upto=r[2],
            max_seq=r[3],
            entries=r[4],
            gaps=_gaps(conn, r[0], r[1], r[2]),
            chain_broken_at=r[5],
            duplicates=r[6],
            problems=r[7],
            held=r[8],
            lost=_lost(conn, r[0], r[1]),
            first_seen_at=r[9],
            last_seen_at=r[10],
            rebuild=rebuild_report(conn, (r[0], r[1]), r[2]),
            permanent_gaps=permanent_gaps(conn, (r[0], r[1])),
        )
        for r in rows
    ]


def recent_problems(conn: Conn, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT store_id, terminal_id, seq, kind, hash, detail, first_at, last_at, count, topic,"
        " raw_size FROM problems ORDER BY last_at DESC, rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()
    names = ("store_id", "terminal_id", "seq", "kind", "hash", "detail", "first_at", "last_at")
    return [dict(zip((*names, "count", "topic", "size"), r, strict=True)) for r in rows]


def collector_report(db: str | DbTarget, *, problems_limit: int = 100) -> dict[str, Any]:
    """Diagnostics of a collector db, read-only in one snapshot (safe while the collector runs)."""
    target = as_target(db)
    where = target.path
    conn, dialect = _open_read_only(target)
    try:
        if dialect.postgres:
            conn.execute(dialect.begin_read)  # the version read in the same snapshot
        version = dialect.schema_version(conn)
        if version != SCHEMA_VERSION:
            raise CollectorStoreError(
                f"{where} has schema version {version}; this edged reads {SCHEMA_VERSION} "
                "(an older database is upgraded when the collector starts)"
            )
        if not dialect.postgres:
            conn.execute(dialect.begin_read)  # one consistent snapshot for the whole report
        terminals = terminal_report(conn)
        problems = recent_problems(conn, problems_limit)
        offline = offline_payments(conn)
        conn.execute("COMMIT")
    except dialect.errors as exc:
        raise CollectorStoreError(f"collector db {where}: cannot read: {exc}") from exc
    finally:
        conn.close()
    return {
        "db": where,
        "schema_version": version,
        "transactions": sum(t.entries for t in terminals),
        "held": sum(t.held for t in terminals),
        "terminals": [t.as_dict() for t in terminals],
        "problems": problems,
        "offline_payments": offline,
    }


def _open_read_only(target: DbTarget) -> tuple[sqlite3.Connection | PgConn, Dialect]:
    """A connection that creates nothing: SQLite read-only, PostgreSQL as it is."""
    if target.postgres:
        try:
            dialect = postgres()
        except ImportError as exc:
            raise CollectorStoreError(
                "PostgreSQL needs psycopg: pip install 'edged[postgres]'"
            ) from exc
        try:
            return PgConn(target.url), dialect
        except dialect.errors as exc:
            raise CollectorStoreError(
                f"cannot connect to collector db {target.url}: {exc}"
            ) from exc
    path = target.path
    if not Path(path).is_file():
        raise CollectorStoreError(f"no collector db at {path}; check [collector] db")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise CollectorStoreError(f"cannot open collector db {path} read-only: {exc}") from exc
    return conn, SQLITE
