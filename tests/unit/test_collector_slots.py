"""Design rule 3: nothing a terminal sends stops its stream at the store.

An entry that cannot be a sale (id_conflict, invalid, bad_hash, damaged_entry, journal_gap)
occupies its seq in `held` with its whole body; the ack passes it; the problem is logged once.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import msgspec
import structlog

from edged.chain import canonical
from edged.collector.report import collector_report
from edged.collector.store import Batch, CollectorStore
from edged.entrykinds import damaged_sale, gap_sale
from edged.wire import Entry
from tests.support.collectordb import CollectorDb
from tests.support.entries import make_chain, sale_entry

S, T = "s1", "t1"


def forged(seq: int, prev_hex: str, sale: dict[str, Any], *, sale_id: str | None = None) -> Entry:
    """An entry of terminal S/T whose hash is right for these fields."""
    return sale_entry(S, T, seq, prev_hex, sale, sale_id=sale_id or str(uuid.uuid4()))


def gap_entry(seq: int, first: int, to: int, prev_hex: str) -> Entry:
    return forged(seq, prev_hex, gap_sale(first, to, "wal lost"), sale_id=f"gap-{seq}")


def damaged(of: Entry, raw: bytes = b"\xff\xfe{not utf-8") -> Entry:
    """What the forwarder sends for a journal row it cannot read: its bytes, its own hashes."""
    sale = msgspec.Raw(canonical(damaged_sale(raw, "sale is not valid UTF-8")))
    return msgspec.structs.replace(of, sale=sale)


def table(db: CollectorDb | str, sql: str) -> list[tuple[Any, ...]]:
    if isinstance(db, str):  # a SQLite file
        with sqlite3.connect(db) as conn:
            return conn.execute(sql).fetchall()
    return db.query(sql)


def sale_seqs(db: CollectorDb) -> list[int]:
    return [r[0] for r in table(db, "SELECT seq FROM transactions ORDER BY seq")]


def report(db: CollectorDb | str) -> dict[str, Any]:
    (terminal,) = collector_report(db if isinstance(db, str) else db.target)["terminals"]
    return terminal  # type: ignore[no-any-return]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_id_conflict_of_a_purged_sale_retried_is_held_and_passed(
    store: CollectorStore, db: CollectorDb
) -> None:
    """The issue's reproduction: a sale id purged at the till and retried gets a new seq."""
    chain = make_chain(S, T, 3)
    store.store_batch(S, T, chain)
    sale = msgspec.json.decode(chain[1].sale)
    retry = forged(4, chain[2].hash, sale, sale_id=chain[1].id)
    after = forged(5, retry.hash, {"id": "x", "total": 1})
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [retry, after]) == 5
        assert store.store_batch(S, T, [retry]) == 5  # resent: a duplicate, not news
    (held,) = events(logs, "entry_held")
    assert (held["seq"], held["kind"], held["log_level"]) == (4, "id_conflict", "error")
    assert sale_seqs(db) == [1, 2, 3, 5]
    ((kind, body),) = table(db, "SELECT kind, body FROM held WHERE seq = 4")
    assert kind == "id_conflict"
    assert msgspec.json.decode(body)["sale"] == sale  # the whole body is kept
    rep = report(db)
    assert (rep["contiguous_upto"], rep["held"], rep["duplicates"]) == (5, 1, 1)
    (problem,) = collector_report(db.target)["problems"]
    assert problem["kind"] == "id_conflict"
    assert f"{S}/{T} seq 2 (the same sale: a retry)" in problem["detail"]


def test_invalid_and_bad_hash_entries_are_held_and_passed(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(S, T, 4)
    tampered = msgspec.structs.replace(
        chain[1], sale=msgspec.Raw(bytes(chain[1].sale).replace(b'"total":1002', b'"total":1'))
    )
    no_id = msgspec.structs.replace(chain[2], id="")
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [chain[0], tampered, no_id, chain[3]]) == 4
    assert [(e["seq"], e["kind"]) for e in events(logs, "entry_held")] == [
        (2, "bad_hash"),
        (3, "invalid"),
    ]
    assert not events(logs, "chain_broken")  # the walk goes on from their stated hashes
    assert sale_seqs(db) == [1, 4]
    bodies = table(db, "SELECT seq, body FROM held ORDER BY seq")
    assert [(seq, msgspec.json.decode(body)["sale"]) for seq, body in bodies] == [
        (2, msgspec.json.decode(tampered.sale)),
        (3, msgspec.json.decode(no_id.sale)),
    ]


def test_damaged_entry_is_held_with_its_raw_bytes(store: CollectorStore, db: CollectorDb) -> None:
    chain = make_chain(S, T, 3)
    broken = damaged(chain[1])
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [chain[0], broken, chain[2]]) == 3
    assert [(e["seq"], e["kind"]) for e in events(logs, "entry_held")] == [(2, "damaged_entry")]
    assert not events(logs, "chain_broken")
    assert sale_seqs(db) == [1, 3]
    ((kind, prev_hash, hash_, raw, detail),) = table(
        db, "SELECT kind, prev_hash, hash, raw, detail FROM held"
    )
    assert (kind, prev_hash, hash_, raw) == (
        "damaged_entry",
        chain[0].hash,
        chain[1].hash,
        b"\xff\xfe{not utf-8",
    )
    assert "not valid UTF-8" in detail


def test_slot_entries_resent_are_duplicates(store: CollectorStore, db: CollectorDb) -> None:
    chain = make_chain(S, T, 3)
    gap = gap_entry(4, 4, 3, chain[2].hash)  # declares nothing lost: hash checked at seq 3
    batch = [chain[0], damaged(chain[1]), chain[2], gap]
    assert store.store_batch(S, T, batch) == 4
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, batch) == 4
        assert store.store_batch(S, T, [batch[1]]) == 4
    assert [e for e in logs if e["log_level"] in ("warning", "error")] == []
    rep = report(db)
    assert (rep["held"], rep["duplicates"], rep["problems"]) == (2, 5, 2)
    counts = [r[0] for r in table(db, "SELECT count FROM problems")]
    assert counts == [1, 1]


def test_valid_sale_with_the_slots_hashes_replaces_it(
    store: CollectorStore, db: CollectorDb
) -> None:
    """The genuine entry a damaged row stood for (a journal repaired from a backup)."""
    chain = make_chain(S, T, 3)
    store.store_batch(S, T, [chain[0], damaged(chain[1]), chain[2]])
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [chain[1]]) == 3
    (replaced,) = events(logs, "held_entry_replaced")
    assert (replaced["seq"], replaced["kind"]) == (2, "damaged_entry")
    assert sale_seqs(db) == [1, 2, 3]
    assert table(db, "SELECT count(*) FROM held") == [(0,)]
    problems = table(db, "SELECT seq, kind FROM problems")
    assert problems == [(2, "damaged_entry")]  # the evidence stays


def test_other_valid_sale_at_a_held_seq_is_a_kept_conflict(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(S, T, 3)
    store.store_batch(S, T, [chain[0], damaged(chain[1]), chain[2]])
    other = forged(2, chain[0].hash, {"id": "y", "total": 5})
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [other]) == 3
    ((seq, kind, level),) = [
        (e["seq"], e["kind"], e["log_level"]) for e in events(logs, "entry_rejected")
    ]
    assert (seq, kind, level) == (2, "seq_conflict", "error")
    assert sale_seqs(db) == [1, 3]
    assert table(db, "SELECT seq, kind FROM held") == [(2, "damaged_entry")]
    ((body,),) = table(db, "SELECT body FROM problems WHERE kind = 'seq_conflict'")
    assert msgspec.json.decode(body)["sale"] == {"id": "y", "total": 5}  # kept as evidence


def test_journal_gap_with_the_store_ahead_of_the_terminal(
    store: CollectorStore, db: CollectorDb
) -> None:
    """The store holds 1..10; the till's journal lost 8..10 and continues at 11."""
    chain = make_chain(S, T, 10)
    store.store_batch(S, T, chain)
    gap = gap_entry(11, 8, 10, chain[6].hash)  # chained to the till's last entry, seq 7
    after = forged(12, gap.hash, {"id": "z", "total": 3})
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [gap, after]) == 12
    assert [(e["seq"], e["kind"]) for e in events(logs, "entry_held")] == [(11, "journal_gap")]
    assert not events(logs, "terminal_journal_gap")  # the store lacks none of 8..10
    assert not events(logs, "chain_broken")
    assert sale_seqs(db) == [*range(1, 11), 12]  # the gap entry is no sale
    rep = report(db)
    assert (rep["contiguous_upto"], rep["lost"], rep["gaps"]) == (12, [], [])


def test_journal_gap_with_the_store_behind_records_the_lost_seqs(
    store: CollectorStore, db: CollectorDb
) -> None:
    """The store has 1..5; the till had 1..10, lost 8..10, sends 6, 7 and continues at 11."""
    chain = make_chain(S, T, 7)
    store.store_batch(S, T, chain[:5])
    gap = gap_entry(11, 8, 10, chain[6].hash)
    after = forged(12, gap.hash, {"id": "z", "total": 3})
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [*chain[5:], gap, after]) == 12
        assert store.store_batch(S, T, [gap]) == 12
    (lost,) = events(logs, "terminal_journal_gap")
    assert (lost["store"], lost["terminal"], lost["seq_from"], lost["seq_to"]) == (S, T, 8, 10)
    assert (lost["gap_seq"], lost["log_level"]) == (11, "error")
    assert not events(logs, "chain_broken")
    rep = report(db)
    assert (rep["contiguous_upto"], rep["lost"], rep["gaps"], rep["max_seq"]) == (
        12,
        [[8, 10]],
        [],
        12,
    )


def test_journal_gap_over_seqs_the_store_holds_some_of(
    store: CollectorStore, db: CollectorDb
) -> None:
    """The store has 1..5 and 9 (from before the loss); the till lost 6..10."""
    chain = make_chain(S, T, 9)
    store.store_batch(S, T, [*chain[:5], chain[8]])
    gap = gap_entry(11, 6, 10, chain[4].hash)
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [gap]) == 11
    lost = [(e["seq_from"], e["seq_to"]) for e in events(logs, "terminal_journal_gap")]
    assert lost == [(6, 8), (10, 10)]
    assert sale_seqs(db) == [1, 2, 3, 4, 5, 9]  # the store's 9 is kept
    assert report(db)["lost"] == [[6, 8], [10, 10]]


def test_journal_gap_waits_for_the_seqs_before_it(store: CollectorStore) -> None:
    """A gap entry that arrives before seq from-1 is no licence to skip what is still sent."""
    chain = make_chain(S, T, 7)
    store.store_batch(S, T, chain[:3])
    gap = gap_entry(11, 8, 10, chain[6].hash)
    assert store.store_batch(S, T, [gap]) == 3  # 4..7 not here yet: an ordinary gap
    assert store.store_batch(S, T, chain[3:]) == 11


def test_journal_gap_that_does_not_end_before_itself_is_held_as_invalid(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(S, T, 3)
    store.store_batch(S, T, chain)
    odd = gap_entry(9, 4, 6, chain[2].hash)  # claims 4..6 but sits at 9: 7, 8 unexplained
    assert store.store_batch(S, T, [odd]) == 3
    ((kind, detail),) = table(db, "SELECT kind, detail FROM held")
    assert kind == "invalid"
    assert "must end at seq 8" in detail


def test_acks_report_the_highest_seq_held_past_a_gap(store: CollectorStore) -> None:
    chain = make_chain(S, T, 7)
    (progress,) = store.store_batches([Batch.of(S, T, [*chain[:3], chain[6]])]).values()
    assert (progress.upto, progress.last_seq, progress.last_hash) == (3, 7, chain[6].hash)
    (progress,) = store.store_batches([Batch.of(S, T, [damaged(chain[3])])]).values()
    assert (progress.upto, progress.last_seq) == (4, 7)
    (progress,) = store.store_batches([Batch.of(S, "t2", [])]).values()
    assert (progress.upto, progress.last_seq, progress.last_hash) == (0, 0, "00" * 32)


def test_version_2_database_is_upgraded_and_a_blocked_terminal_goes_on(db_path: str) -> None:
    """A terminal a version 2 store held back at an id_conflict passes once it resends."""
    from edged.collector import schema

    chain = make_chain(S, T, 3)
    retry = forged(4, chain[2].hash, {"id": "r", "total": 1}, sale_id=chain[0].id)
    with sqlite3.connect(db_path) as conn:
        conn.executescript(schema._SCHEMA + schema._SCHEMA_V2 + "PRAGMA user_version = 2;")
        conn.execute("INSERT INTO identity VALUES ('abc', 'now')")
        for e in chain:
            conn.execute(
                "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}', 'now', 'c0')",
                (S, T, e.seq, e.id, e.receipt_no, e.created_at, e.prev_hash, e.hash),
            )
        conn.execute(
            "INSERT INTO terminals VALUES (?, ?, 3, ?, 3, NULL, NULL, NULL, 3, 0, 1, 'x', 'x')",
            (S, T, chain[2].hash),
        )
    store = CollectorStore.open(db_path, init=True)
    try:
        (progress,) = store.store_batches([Batch.of(S, T, [retry])]).values()
    finally:
        store.close()
    assert (progress.upto, progress.last_seq, progress.last_hash) == (4, 4, retry.hash)
    assert report(db_path)["held"] == 1
