"""The `problems` table (edged/collector/problems.py): a problem is kept once and counted after,
logged the first time only; a quarantined message keeps its topic, a bounded copy, its size and
SHA-256 under seq 0; text that SQLite cannot take is made printable. Real SQLite files."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from edged.collector.problems import Message, Quarantine, as_received, quarantine, record_problem
from edged.collector.store import CollectorStore
from edged.wire import Entry
from tests.support.entries import make_chain

KEY = ("s1", "t1")
T1 = "2026-12-01T10:00:00.000Z"
T2 = "2026-12-01T10:05:00.000Z"
LONE = "\udc80"  # a lone surrogate: no UTF-8 for it


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = str(tmp_path / "collector.db")
    CollectorStore.open(db).close()
    c = sqlite3.connect(db, isolation_level=None)
    yield c
    c.close()


def rows(conn: sqlite3.Connection, columns: str) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT {columns} FROM problems ORDER BY rowid").fetchall()


def problem(
    conn: sqlite3.Connection, now: str, event: str | None = "chain_broken", **kw: Any
) -> None:
    fields: dict[str, Any] = {
        "seq": 7,
        "hash_hex": "ab" * 32,
        "kind": "chain_break",
        "detail": "prev_hash differs",
        "body": '{"seq":7}',
    }
    fields.update(kw)
    record_problem(conn, KEY, now=now, event=event, **fields)


def test_a_problem_is_kept_once_counted_after_and_logged_the_first_time(
    conn: sqlite3.Connection,
) -> None:
    with structlog.testing.capture_logs() as logs:
        problem(conn, T1)
        problem(conn, T2)
        problem(conn, T2)
    assert rows(conn, "store_id, terminal_id, seq, kind, hash, detail, body") == [
        ("s1", "t1", 7, "chain_break", "ab" * 32, "prev_hash differs", '{"seq":7}')
    ]
    assert rows(conn, "first_at, last_at, count") == [(T1, T2, 3)]
    assert [(e["event"], e["log_level"]) for e in logs] == [("chain_broken", "error")]
    (event,) = logs
    assert (event["store"], event["terminal"], event["seq"], event["kind"]) == (
        "s1",
        "t1",
        7,
        "chain_break",
    )
    assert event["problem"] == "prev_hash differs"


def test_another_seq_kind_or_hash_is_another_problem(conn: sqlite3.Connection) -> None:
    problem(conn, T1)
    problem(conn, T1, seq=8)
    problem(conn, T1, kind="hash_mismatch")
    problem(conn, T1, hash_hex="cd" * 32)
    assert rows(conn, "count") == [(1,)] * 4


def test_a_problem_without_an_event_is_kept_but_not_logged(conn: sqlite3.Connection) -> None:
    with structlog.testing.capture_logs() as logs:
        problem(conn, T1, event=None)
    assert logs == []
    assert rows(conn, "count") == [(1,)]


def test_text_sqlite_cannot_take_is_kept_printable(conn: sqlite3.Connection) -> None:
    problem(conn, T1, hash_hex=f"ab{LONE}", detail=f"sale id x{LONE}y is invalid", body="é")
    assert rows(conn, "hash, detail, body") == [("ab?", "sale id x?y is invalid", "é")]
    problem(conn, T1, seq=8, hash_hex="", detail="café")  # not ASCII, but UTF-8 takes it
    assert rows(conn, "detail")[-1] == ("café",)


def test_the_evidence_of_an_entry_is_its_json_as_sent() -> None:
    (entry,) = make_chain(*KEY, 1)
    text = as_received(entry)
    assert isinstance(text, str)
    assert msgspec.json.decode(text, type=Entry) == entry


def quarantined(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return rows(
        conn, "store_id, terminal_id, seq, kind, hash, detail, body, topic, raw, raw_size, count"
    )


def test_a_quarantined_message_is_kept_under_seq_0_with_its_topic_hash_and_size(
    conn: sqlite3.Connection,
) -> None:
    payload = b'{"v":1,"entries":[}'
    item = Quarantine(Message("edged/v1/s1/t1/tx", payload), "s1", "t1", "not JSON")
    with structlog.testing.capture_logs() as logs:
        quarantine(conn, item, T1)
        quarantine(conn, item, T2)  # redelivered: counted
    digest = hashlib.sha256(payload).hexdigest()
    assert quarantined(conn) == [
        ("s1", "t1", 0, "quarantined", digest, "not JSON", "", "edged/v1/s1/t1/tx", payload, 19, 2)
    ]
    assert rows(conn, "first_at, last_at") == [(T1, T2)]
    event = logs[0]
    assert (event["event"], event["log_level"], event["sha256"], event["size"]) == (
        "tx_quarantined",
        "error",
        digest,
        19,
    )


def test_a_quarantined_message_keeps_its_first_mebibyte(conn: sqlite3.Connection) -> None:
    payload = bytes(range(256)) * (5 * 1024)  # 1.25 MiB
    quarantine(conn, Quarantine(Message("t", payload), "s1", "t1", "too big"), T1)
    ((raw, size),) = rows(conn, "raw, raw_size")
    assert (len(raw), size) == (1024 * 1024, 5 * 256 * 1024)
    assert raw == payload[: 1024 * 1024]


def test_a_quarantined_message_s_names_are_kept_printable(conn: sqlite3.Connection) -> None:
    item = Quarantine(
        Message(f"edged/v1/s{LONE}/t{LONE}/tx", b"x"), f"s{LONE}", f"t{LONE}", f"bad {LONE}"
    )
    quarantine(conn, item, T1)
    assert rows(conn, "store_id, terminal_id, topic, detail") == [
        ("s?", "t?", "edged/v1/s?/t?/tx", "bad ?")
    ]
