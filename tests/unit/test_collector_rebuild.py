"""The database side of rebuilding a terminal's stream (edged/collector/rebuild.py): what a
resend request asks for, what an answer makes a permanent gap, how accepting one moves acks on,
and what the status report says of it. Real SQLite files; the functions run on a connection of
their own, as the store's write transactions run them (test_collector_resend covers both
backends through the store)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from edged.collector.rebuild import (
    AcceptGapError,
    ResendPlan,
    accept_gap,
    permanent_gaps,
    plan_resend,
    rebuild_report,
    record_answer,
)
from edged.collector.state import TerminalKey
from edged.collector.store import CollectorStore
from edged.entrykinds import gap_sale
from edged.wire import Entry, ResendAnswer
from tests.support.entries import make_chain, sale_entry

KEY: TerminalKey = ("s1", "t1")
T1 = "2026-12-01T10:00:00.000Z"
T2 = "2026-12-01T10:05:00.000Z"
T3 = "2026-12-01T10:09:00.000Z"


@pytest.fixture
def path(tmp_path: Path) -> str:
    """A collector database with its schema, nothing stored."""
    db = str(tmp_path / "collector.db")
    CollectorStore.open(db).close()
    return db


@pytest.fixture
def conn(path: str) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(path, isolation_level=None)
    yield c
    c.close()


def store_entries(path: str, entries: list[Entry], key: TerminalKey = KEY) -> int:
    store = CollectorStore.open(path)
    try:
        return store.store_batch(*key, entries)
    finally:
        store.close()


def answer(from_: int, retained_from: int, upto: int | None = None) -> ResendAnswer:
    return ResendAnswer(v=1, from_=from_, upto=upto, retained_from=retained_from, last_seq=99)


def unavailable(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    return conn.execute("SELECT seq_from, seq_to FROM unavailable ORDER BY seq_from").fetchall()


def rebuild_row(conn: sqlite3.Connection) -> tuple[Any, ...]:
    return conn.execute(
        "SELECT from_seq, upto_seq, requests, first_at, last_at FROM rebuilds"
    ).fetchone()


def test_a_request_skips_the_seqs_the_terminal_purged(conn: sqlite3.Connection) -> None:
    record_answer(conn, KEY, answer(6, retained_from=9, upto=20), T1)
    assert unavailable(conn) == [(6, 8)]
    assert plan_resend(conn, KEY, (6, 10), T2) == ResendPlan(9, 10, "the store lacks seqs 9..10")
    assert plan_resend(conn, KEY, (7, 12), T2) == ResendPlan(9, 12, "the store lacks seqs 9..12")
    assert plan_resend(conn, KEY, (10, 12), T2) == ResendPlan(10, 12, "the store lacks seqs 10..12")
    assert plan_resend(conn, KEY, (4, 5), T2) == ResendPlan(4, 5, "the store lacks seqs 4..5")


def test_nothing_is_asked_for_when_the_terminal_purged_all_of_the_gap(
    conn: sqlite3.Connection,
) -> None:
    record_answer(conn, KEY, answer(6, retained_from=9), T1)
    assert plan_resend(conn, KEY, (6, 8), T2) is None
    assert plan_resend(conn, KEY, (7, 8), T2) is None
    assert conn.execute("SELECT count(*) FROM rebuilds").fetchone() == (0,)


def test_a_request_from_seq_1_says_the_store_lost_its_database(conn: sqlite3.Connection) -> None:
    plan = plan_resend(conn, KEY, (1, 5), T1)
    assert plan is not None and (plan.from_seq, plan.upto) == (1, 5)
    assert plan.reason.startswith("the store has no entries of this terminal before seq 6: ")
    assert "lost or restored from an older copy" in plan.reason
    assert plan_resend(conn, KEY, (2, 5), T1) == ResendPlan(2, 5, "the store lacks seqs 2..5")


def test_a_request_within_the_one_before_counts_as_a_retry(conn: sqlite3.Connection) -> None:
    plan_resend(conn, KEY, (6, 10), T1)
    assert rebuild_row(conn) == (6, 10, 1, T1, T1)
    plan_resend(conn, KEY, (6, 10), T2)
    assert rebuild_row(conn) == (6, 10, 2, T1, T2)
    plan_resend(conn, KEY, (7, 9), T3)  # filled in part: still the request before
    assert rebuild_row(conn) == (6, 10, 3, T1, T3)
    plan_resend(conn, KEY, (5, 10), T1)  # begins before it: a new request
    assert rebuild_row(conn) == (5, 10, 1, T1, T1)
    plan_resend(conn, KEY, (5, 11), T2)  # ends after it
    assert rebuild_row(conn) == (5, 11, 1, T2, T2)


def test_an_answer_makes_the_purged_seqs_the_store_lacks_permanent_gaps(
    path: str, conn: sqlite3.Connection
) -> None:
    chain = make_chain(*KEY, 12)
    store_entries(path, [*chain[:5], chain[7], chain[9]])  # 1..5, 8 and 10
    plan_resend(conn, KEY, (6, 12), T1)
    with structlog.testing.capture_logs() as logs:
        record_answer(conn, KEY, answer(6, retained_from=13), T2)
    assert unavailable(conn) == [(6, 7), (9, 9), (11, 12)]
    problems = conn.execute(
        "SELECT store_id, terminal_id, seq, kind, detail FROM problems ORDER BY seq"
    ).fetchall()
    assert [p[:4] for p in problems] == [("s1", "t1", s, "unavailable") for s in (6, 9, 11)]
    assert problems[0][4].startswith(
        "seqs 6..7 were purged at the terminal (it keeps seqs from 13): a permanent gap"
    )
    assert [e["seq"] for e in logs if e["event"] == "resend_unavailable"] == [6, 9, 11]
    assert conn.execute("SELECT answered_at, retained_from FROM rebuilds").fetchone() == (T2, 13)


@pytest.mark.parametrize(
    ("reply", "gaps"),
    [
        (answer(6, retained_from=20, upto=7), [(6, 7)]),  # asked for 6..7 only
        (answer(6, retained_from=8, upto=10), [(6, 7)]),  # purged before what was asked ends
        (answer(6, retained_from=7), [(6, 6)]),
        (answer(6, retained_from=6), []),  # the terminal still has all of it
        (answer(6, retained_from=1, upto=9), []),
    ],
)
def test_a_permanent_gap_ends_where_the_request_or_the_terminal_s_journal_does(
    conn: sqlite3.Connection, reply: ResendAnswer, gaps: list[tuple[int, int]]
) -> None:
    record_answer(conn, KEY, reply, T1)
    assert unavailable(conn) == gaps
    assert conn.execute("SELECT count(*) FROM problems").fetchone() == (len(gaps),)


def test_the_report_tells_what_was_asked_for_what_arrived_and_what_is_lost(
    path: str, conn: sqlite3.Connection
) -> None:
    assert rebuild_report(conn, KEY, 0) is None
    chain = make_chain(*KEY, 12)
    store_entries(path, [chain[8]])  # seq 9 arrived, out of order
    plan_resend(conn, KEY, (6, 10), T1)
    plan_resend(conn, KEY, (6, 10), T2)  # asked again
    record_answer(conn, KEY, answer(1, retained_from=3, upto=2), T2)  # before the request
    record_answer(conn, KEY, answer(3, retained_from=8, upto=7), T2)  # overlaps it: 6..7
    record_answer(conn, KEY, answer(12, retained_from=14, upto=13), T3)  # after it
    assert unavailable(conn) == [(1, 2), (3, 7), (12, 13)]
    assert rebuild_report(conn, KEY, 2) == {
        "requested_from": 6,
        "requested_upto": 10,
        "received_upto": 5,
        "remaining": 2,  # 8 and 10: 9 is held, 6..7 are lost
        "unavailable": 2,
        "reason": "the store lacks seqs 6..10",
        "requests": 2,
        "first_requested_at": T1,
        "last_requested_at": T2,
        "answered_at": T3,
        "terminal_retained_from": 14,
    }
    report = rebuild_report(conn, KEY, 8)
    assert report is not None and report["received_upto"] == 8
    report = rebuild_report(conn, KEY, 12)
    assert report is not None and report["received_upto"] == 10


def test_the_report_counts_nothing_remaining_once_all_arrived(
    path: str, conn: sqlite3.Connection
) -> None:
    plan_resend(conn, KEY, (2, 3), T1)
    store_entries(path, make_chain(*KEY, 3))
    report = rebuild_report(conn, KEY, 3)
    assert report is not None
    assert (report["received_upto"], report["remaining"], report["unavailable"]) == (3, 0, 0)


def test_permanent_gaps_are_listed_in_seq_order_with_their_acceptance(
    path: str, conn: sqlite3.Connection
) -> None:
    assert permanent_gaps(conn, KEY) == []
    record_answer(conn, KEY, answer(12, retained_from=14), T1)
    record_answer(conn, KEY, answer(1, retained_from=3), T2)
    record_answer(conn, ("s1", "t2"), answer(1, retained_from=5), T2)
    accept_gap(conn, KEY, (12, 13), by="bob", now=T3)
    assert permanent_gaps(conn, KEY) == [
        {"from": 1, "to": 2, "reported_at": T2, "accepted_at": None, "accepted_by": None},
        {"from": 12, "to": 13, "reported_at": T1, "accepted_at": T3, "accepted_by": "bob"},
    ]


@pytest.fixture
def gap_6_to_8(path: str, conn: sqlite3.Connection) -> list[Entry]:
    """Terminal KEY: 1..5 and 11..12 stored, 6..8 purged at the terminal, 9..10 not yet sent."""
    chain = make_chain(*KEY, 12)
    store_entries(path, [*chain[:5], *chain[10:]])
    plan_resend(conn, KEY, (6, 10), T1)
    record_answer(conn, KEY, answer(6, retained_from=9, upto=10), T1)
    return chain


@pytest.mark.parametrize(
    "seqs", [(6, 10), (7, 8), (6, 7), (5, 8), (9, 10), (1, 3)], ids=lambda s: f"{s[0]}..{s[1]}"
)
def test_only_a_whole_reported_gap_can_be_accepted(
    gap_6_to_8: list[Entry], conn: sqlite3.Connection, seqs: tuple[int, int]
) -> None:
    with pytest.raises(AcceptGapError) as raised:
        accept_gap(conn, KEY, seqs, by="bob", now=T2)
    assert str(raised.value) == (
        f"seqs {seqs[0]}..{seqs[1]} of store s1 terminal t1 are not a permanent gap the terminal"
        " reported (known permanent gaps: 6..8); see `edged collector status`"
    )
    assert conn.execute("SELECT accepted_at FROM unavailable").fetchall() == [(None,)]


def test_accepting_two_gaps_at_once_names_each(path: str, conn: sqlite3.Connection) -> None:
    """6..8 and 11..12 purged at the terminal, 9..10 stored between: both accepted, and the
    answer names the two gaps, not the stored seqs between them."""
    chain = make_chain(*KEY, 14)
    store_entries(path, [*chain[:5], *chain[8:10], *chain[12:]])
    plan_resend(conn, KEY, (6, 12), T1)
    record_answer(conn, KEY, answer(6, retained_from=13, upto=12), T1)
    done = accept_gap(conn, KEY, (6, 12), by="bob", now=T2)
    assert done == (
        "accepted seqs 6..8, 11..12 of store s1 terminal t1 as lost (by bob); the store now"
        " acknowledges up to seq 14 (was 5)"
    )


def test_accepting_a_gap_no_terminal_reported_names_none(conn: sqlite3.Connection) -> None:
    with pytest.raises(AcceptGapError, match=r"\(known permanent gaps: none\)"):
        accept_gap(conn, KEY, (1, 1), by="bob", now=T2)


def test_an_accepted_gap_is_walked_past_and_acked(
    path: str, gap_6_to_8: list[Entry], conn: sqlite3.Connection
) -> None:
    done = accept_gap(conn, KEY, (6, 8), by="bob", now=T2)
    assert done == (
        "accepted seqs 6..8 of store s1 terminal t1 as lost (by bob); the store now acknowledges"
        " up to seq 8 (was 5)"
    )
    assert conn.execute("SELECT accepted_at, accepted_by FROM unavailable").fetchall() == [
        (T2, "bob")
    ]
    assert conn.execute("SELECT contiguous_upto, last_seen_at FROM terminals").fetchone() == (
        8,
        T2,
    )
    assert store_entries(path, gap_6_to_8[8:10]) == 12  # the rest arrives: all acked


def test_a_permanent_gap_the_terminals_journal_gap_declares_is_settled_by_it(
    path: str, conn: sqlite3.Connection
) -> None:
    """A till whose -wal was lost made a new journal that declares seqs 1..5 lost (its
    journal_gap entry at seq 6); then the store lost its database. The till's answer makes 1..5
    a permanent gap, and its gap entry declares the same seqs lost: that settles the gap (no
    admin is left waiting to accept it), and the report counts those seqs once."""
    plan_resend(conn, KEY, (1, 10), T1)
    record_answer(conn, KEY, answer(1, retained_from=6, upto=10), T1)
    assert unavailable(conn) == [(1, 5)]
    gap = sale_entry(*KEY, 6, "ab" * 32, gap_sale(1, 5, "wal lost"), sale_id="gap-6")
    after = make_chain(*KEY, 4, start=7, prev=bytes.fromhex(gap.hash))
    assert store_entries(path, [gap, *after]) == 10
    assert conn.execute("SELECT seq_from, seq_to FROM lost").fetchall() == [(1, 5)]
    assert [(g["from"], g["to"], g["accepted_by"]) for g in permanent_gaps(conn, KEY)] == [
        (1, 5, "the terminal: its journal_gap at seq 6 declares these seqs lost")
    ]
    report = rebuild_report(conn, KEY, 10)
    assert report is not None
    assert (report["remaining"], report["unavailable"]) == (0, 5)


def test_the_report_counts_a_seq_both_purged_and_declared_lost_once(
    path: str, conn: sqlite3.Connection
) -> None:
    """Seqs 1..5 both reported purged and declared lost, 9..10 still to come: 2 remaining."""
    plan_resend(conn, KEY, (1, 10), T1)
    record_answer(conn, KEY, answer(1, retained_from=6, upto=10), T1)
    gap = sale_entry(*KEY, 6, "ab" * 32, gap_sale(1, 5, "wal lost"), sale_id="gap-6")
    after = make_chain(*KEY, 2, start=7, prev=bytes.fromhex(gap.hash))
    assert store_entries(path, [gap, *after]) == 8
    report = rebuild_report(conn, KEY, 8)
    assert report is not None
    assert report["remaining"] == 2
