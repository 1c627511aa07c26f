"""The `problems` table: evidence of what a terminal sent that is no plain sale, logged once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec
import structlog

from edged.collector.dialect import Conn
from edged.collector.state import TerminalKey
from edged.wire import Entry

log = structlog.get_logger(__name__)

RAW_KEPT_BYTES = 1024 * 1024  # of a quarantined message; its size and SHA-256 cover the rest
QUARANTINE_SEQ = 0  # `problems.seq` of a quarantined message: it has no seq we could trust


@dataclass(frozen=True, slots=True)
class Message:
    """A tx message as it arrived, kept as evidence if it has to be quarantined."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A message that cannot be stored (malformed, out of range, oversized): kept in `problems`,
    settled so that it is not redelivered, and never acknowledged to its terminal."""

    message: Message
    store_id: str  # from its topic; "" if the topic names none
    terminal_id: str
    reason: str


def as_received(entry: Entry) -> str:
    """The entry as JSON, its sale as sent: the evidence kept of an entry that is no sale."""
    return msgspec.json.encode(entry).decode("utf-8", "replace")


def record_problem(
    conn: Conn,
    key: TerminalKey,
    *,
    seq: int,
    hash_hex: str,
    kind: str,
    detail: str,
    body: str,
    now: str,
    event: str | None,
) -> None:
    """Keep one problem as evidence; the first time it is seen, log `event` (if any) at ERROR.

    The same (seq, kind, hash) again only counts up: a terminal resending is not news.
    """
    (count,) = conn.execute(
        "INSERT INTO problems (store_id, terminal_id, seq, kind, hash, detail, body,"
        " first_at, last_at, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
        " ON CONFLICT (store_id, terminal_id, seq, kind, hash)"
        " DO UPDATE SET last_at = excluded.last_at, count = problems.count + 1 RETURNING count",
        (*key, seq, kind, _printable(hash_hex), _printable(detail), body, now, now),
    ).fetchone()
    if count == 1 and event is not None:
        log.error(event, store=key[0], terminal=key[1], seq=seq, kind=kind, problem=detail)


def quarantine(conn: Conn, item: Quarantine, now: str, *, error: Exception | None = None) -> None:
    """Keep a message that cannot be stored as evidence in `problems`, and log it at ERROR."""
    payload = item.message.payload
    digest = hashlib.sha256(payload).hexdigest()
    store_id, terminal_id, topic, reason = (
        _printable(text)
        for text in (item.store_id, item.terminal_id, item.message.topic, item.reason)
    )
    conn.execute(
        "INSERT INTO problems (store_id, terminal_id, seq, kind, hash, detail, body, first_at,"
        " last_at, count, topic, raw, raw_size) VALUES (?, ?, ?, 'quarantined', ?, ?, '', ?, ?,"
        " 1, ?, ?, ?) ON CONFLICT (store_id, terminal_id, seq, kind, hash)"
        " DO UPDATE SET last_at = excluded.last_at, count = problems.count + 1",
        (
            store_id,
            terminal_id,
            QUARANTINE_SEQ,
            digest,
            reason,
            now,
            now,
            topic,
            payload[:RAW_KEPT_BYTES],
            len(payload),
        ),
    )
    log.error(
        "tx_quarantined",
        topic=topic,
        store=store_id,
        terminal=terminal_id,
        problem=reason,
        size=len(payload),
        sha256=digest,
        exc_info=error,
    )


def _printable(text: str) -> str:
    """`text` as SQLite can take it: a lone surrogate (never from the wire) becomes "?"."""
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text
