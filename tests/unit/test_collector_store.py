"""The collector store: idempotent, conflict-safe, gap- and chain-aware, durable across reopen."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest
import structlog

from edged.chain import GENESIS_HASH, canonical, entry_bytes, entry_hash
from edged.cli import main as cli_main
from edged.collector.dialect import INSERT_ROWS_MAX
from edged.collector.report import collector_report
from edged.collector.schema import SCHEMA_VERSION, CollectorStoreError
from edged.collector.store import Batch, CollectorStore
from edged.collector.verify import Rejected, _accept_fast, _check_entry_exact, check_entry
from edged.wire import Entry
from tests.support.collectordb import CollectorDb
from tests.support.entries import make_chain as support_chain

S, T = "s1", "t1"


def make_chain(n: int, *, start: int = 1, prev: bytes = GENESIS_HASH, tag: str = "") -> list[Entry]:
    """A valid hash chain of n entries for terminal S/T."""
    return support_chain(S, T, n, start=start, prev=prev, tag=tag)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`edged collector status` configures logging onto pytest's captured (then closed) stream."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers = root.handlers[:]
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers


def rows(db: CollectorDb, store_id: str = S, terminal_id: str = T) -> list[tuple[int, str]]:
    return db.query(
        "SELECT seq, hash FROM transactions WHERE store_id = ? AND terminal_id = ? ORDER BY seq",
        (store_id, terminal_id),
    )


def report_of(store: CollectorStore, terminal_id: str = T) -> dict[str, object]:
    (rep,) = [r for r in store.terminal_report() if r.terminal_id == terminal_id]
    return rep.as_dict()


def test_batch_is_stored_and_acked_up_to_its_last_seq(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(5)
    assert store.store_batch(S, T, chain) == 5
    assert [r[0] for r in rows(db)] == [1, 2, 3, 4, 5]
    assert [r[1] for r in rows(db)] == [e.hash for e in chain]


def test_schema_is_versioned_and_has_the_contract_columns(
    store: CollectorStore, db: CollectorDb
) -> None:
    assert collector_report(db.target)["schema_version"] == SCHEMA_VERSION
    if db.backend == "sqlite":
        assert db.query("PRAGMA journal_mode") == [("wal",)]
        columns = {r[1] for r in db.query("PRAGMA table_info(transactions)")}
    else:
        columns = {
            r[0]
            for r in db.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                ("transactions",),
            )
        }
    assert {
        "store_id",
        "terminal_id",
        "seq",
        "id",
        "receipt_no",
        "hash",
        "prev_hash",
        "created_at",
        "body",
        "received_at",
    } <= columns


def test_body_is_the_canonical_entry_and_lets_an_auditor_recompute_the_hash(
    store: CollectorStore, db: CollectorDb
) -> None:
    (entry,) = make_chain(1)
    store.store_batch(S, T, [entry])
    ((body,),) = db.query("SELECT body FROM transactions")
    doc = msgspec.json.decode(body)
    assert canonical(doc).decode() == body
    recomputed = entry_hash(
        bytes.fromhex(doc["prev_hash"]),
        entry_bytes(
            doc["seq"], doc["id"], doc["receipt_no"], doc["created_at"], canonical(doc["sale"])
        ),
    )
    assert recomputed.hex() == doc["hash"] == entry.hash


def test_duplicates_are_ignored_and_reacked(store: CollectorStore, db: CollectorDb) -> None:
    chain = make_chain(6)
    assert store.store_batch(S, T, chain[:4]) == 4
    assert store.store_batch(S, T, chain[:4]) == 4  # a resend: same answer, nothing added
    assert store.store_batch(S, T, chain[2:6]) == 6  # overlapping resend plus new entries
    assert len(rows(db)) == 6
    rep = report_of(store)
    assert rep["entries"] == 6
    assert rep["duplicates"] == 6
    assert rep["problems"] == 0


def test_duplicate_inside_one_batch_is_stored_once(store: CollectorStore, db: CollectorDb) -> None:
    chain = make_chain(3)
    assert store.store_batch(S, T, [*chain, chain[1]]) == 3
    assert len(rows(db)) == 3
    assert report_of(store)["duplicates"] == 1  # judged once


def test_a_batch_with_a_seq_twice_is_counted_and_acknowledged_as_any_other(
    store: CollectorStore,
) -> None:
    chain = make_chain(4)
    store.store_batch(S, T, chain[:1])
    with structlog.testing.capture_logs() as logs:
        result = store.store_batches([Batch.of(S, T, [chain[1], chain[2], chain[2], chain[3]])])
    progress = result[(S, T)]
    assert (progress.upto, progress.last_seq, progress.last_hash) == (4, 4, chain[3].hash)
    rep = report_of(store)
    assert (rep["entries"], rep["duplicates"], rep["problems"]) == (4, 1, 0)
    assert [e["inserted"] for e in logs if e["event"] == "entries_stored"] == [3]


def test_entry_held_in_a_batch_with_a_seq_twice_is_passed(
    store: CollectorStore, db: CollectorDb
) -> None:
    """The entry-by-entry path (a seq twice in the batch) holds what is no sale too."""
    chain = make_chain(3)
    tampered = msgspec.structs.replace(chain[2], sale=msgspec.Raw(b'{"total":1}'))
    assert store.store_batch(S, T, [chain[0], chain[1], chain[1], tampered]) == 3
    assert [r[0] for r in rows(db)] == [1, 2]
    assert [(p["kind"], p["seq"]) for p in store.problems()] == [("bad_hash", 3)]
    assert report_of(store)["held"] == 1


def test_same_seq_with_other_hash_is_a_conflict_never_overwritten(
    store: CollectorStore, db: CollectorDb
) -> None:
    original = make_chain(3)
    store.store_batch(S, T, original)
    impostor = make_chain(3, tag="-other")  # a different journal claiming the same seqs
    with structlog.testing.capture_logs() as logs:
        upto = store.store_batch(S, T, impostor[:2])
    assert upto == 3  # the store keeps what it holds; the impostors are evidence, no stop
    assert report_of(store)["problems"] == 2
    assert [r[1] for r in rows(db)] == [e.hash for e in original]
    assert sorted((p["kind"], p["seq"]) for p in store.problems()) == [
        ("seq_conflict", 1),
        ("seq_conflict", 2),
    ]
    rejected = [e for e in logs if e["event"] == "entry_rejected"]
    assert {(e["seq"], e["kind"], e["store"], e["terminal"]) for e in rejected} == {
        (1, "seq_conflict", S, T),
        (2, "seq_conflict", S, T),
    }
    # Repeats of the same conflict are counted, not stored again, nor logged again.
    with structlog.testing.capture_logs() as logs:
        store.store_batch(S, T, impostor[:1])
    assert not [e for e in logs if e["event"] == "entry_rejected"]
    counts = {p["seq"]: p["count"] for p in store.problems()}
    assert counts == {1: 2, 2: 1}


def test_same_sale_id_under_another_seq_is_a_conflict(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(2)
    store.store_batch(S, T, chain)
    reused = with_sale_id(make_chain(1)[0], chain[0].id)
    assert store.store_batch(S, "t2", [reused]) == 1  # held in its slot: the stream goes on
    assert rows(db, S, "t2") == []
    (problem,) = store.problems()
    assert problem["kind"] == "id_conflict"
    assert f"{S}/{T} seq 1 (another sale)" in problem["detail"]


def with_sale_id(entry: Entry, sale_id: str) -> Entry:
    """`entry` (seq 1) under another sale id, hashed again: only the id reuse is wrong."""
    sale_json = bytes(entry.sale)
    digest = entry_hash(
        GENESIS_HASH,
        entry_bytes(entry.seq, sale_id, entry.receipt_no, entry.created_at, sale_json),
    )
    return msgspec.structs.replace(entry, id=sale_id, hash=digest.hex())


def test_a_sale_id_another_collector_stores_during_the_copy_is_held_and_nothing_is_lost(
    store: CollectorStore, db: CollectorDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL finds the seqs stored, then COPYs the rest (collector/bulk.py): a collector
    storing another terminal's entry with one of these sale ids in between makes the COPY fail
    on the unique index, and the batch is stored as the INSERT path would have stored it."""
    if db.backend != "postgresql":
        pytest.skip("SQLite has one writer per file: nobody stores in between")
    chain = make_chain(3)
    theirs = with_sale_id(make_chain(1)[0], chain[1].id)
    rival = CollectorStore.open(db.target, received_by="rival")
    conn = store._conn
    copy_rows = conn.copy_rows  # type: ignore[attr-defined]

    def racing(*args: object) -> None:
        rival.store_batch(S, "t2", [theirs])  # committed after our check, before our COPY
        copy_rows(*args)

    monkeypatch.setattr(conn, "copy_rows", racing)
    try:
        assert store.store_batch(S, T, chain) == 3
    finally:
        rival.close()
    assert [r[0] for r in rows(db)] == [1, 3]
    assert [r[0] for r in rows(db, S, "t2")] == [1]
    (problem,) = store.problems()
    assert (problem["kind"], problem["seq"]) == ("id_conflict", 2)
    assert f"{S}/t2 seq 1 (another sale)" in problem["detail"]


def test_upto_never_passes_a_gap_and_advances_once_it_is_filled(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(10)
    assert store.store_batch(S, T, chain[:3]) == 3
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, chain[6:]) == 3  # 4..6 missing
    gap_logs = [e for e in logs if e["event"] == "gap_detected"]
    assert [(e["seq"], e["missing_to"], e["store"], e["terminal"]) for e in gap_logs] == [
        (4, 6, S, T)
    ]
    assert len(rows(db)) == 7  # stored although not acknowledged
    rep = report_of(store)
    assert rep["contiguous_upto"] == 3
    assert rep["gaps"] == [[4, 6]]
    assert rep["max_seq"] == 10
    assert store.store_batch(S, T, chain[4:5]) == 3  # 5 arrives, 4 still missing
    assert report_of(store)["gaps"] == [[4, 4], [6, 6]]
    assert store.store_batch(S, T, [chain[3], chain[5]]) == 10
    rep = report_of(store)
    assert rep["gaps"] == []
    assert rep["contiguous_upto"] == 10


def test_first_entries_missing_hold_upto_at_zero(store: CollectorStore) -> None:
    chain = make_chain(4)
    assert store.store_batch(S, T, chain[2:]) == 0
    assert report_of(store)["gaps"] == [[1, 2]]
    assert store.store_batch(S, T, chain[:2]) == 4


def test_broken_link_is_stored_reported_once_and_passed(
    store: CollectorStore, db: CollectorDb
) -> None:
    first = make_chain(3)
    # A self-consistent entry 4 that does not chain from entry 3 (e.g. entry 3 was altered).
    forged = make_chain(2, start=4, prev=b"\x11" * 32)
    store.store_batch(S, T, first)
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, forged) == 5
    broken = [e for e in logs if e["event"] == "chain_broken"]
    assert [(e["seq"], e["store"], e["terminal"], e["log_level"]) for e in broken] == [
        (4, S, T, "error")
    ]
    assert len(rows(db)) == 5  # stored; the store never replaces it, so holding helps none
    rep = report_of(store)
    assert rep["chain_broken_at"] == 4
    assert rep["contiguous_upto"] == 5
    assert [(p["kind"], p["seq"]) for p in store.problems()] == [("chain_broken", 4)]
    # A resend changes nothing and does not log the same break again.
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, forged) == 5
    assert not [e for e in logs if e["event"] == "chain_broken"]


def test_seq_one_must_chain_from_genesis(store: CollectorStore) -> None:
    off = make_chain(2, prev=b"\x22" * 32)
    assert store.store_batch(S, T, off) == 2
    assert report_of(store)["chain_broken_at"] == 1


def test_entry_whose_hash_does_not_verify_is_held(store: CollectorStore, db: CollectorDb) -> None:
    chain = make_chain(3)
    tampered = msgspec.structs.replace(
        chain[1], sale=msgspec.Raw(bytes(chain[1].sale).replace(b'"total":1002', b'"total":1'))
    )
    assert bytes(tampered.sale) != bytes(chain[1].sale)
    assert store.store_batch(S, T, [chain[0], tampered, chain[2]]) == 3  # held, passed
    assert [r[0] for r in rows(db)] == [1, 3]
    (problem,) = store.problems()
    assert problem["kind"] == "bad_hash"
    assert problem["seq"] == 2
    assert store.store_batch(S, T, [chain[1]]) == 3  # the genuine entry replaces the slot
    assert [r[0] for r in rows(db)] == [1, 2, 3]
    assert report_of(store)["held"] == 0


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"hash": "ab" * 31}, "hash is not 64 lowercase hex"),
        ({"prev_hash": "Z" * 64}, "prev_hash is not 64 lowercase hex"),
        ({"seq": 0}, "seq 0 is not in"),
        ({"sale": msgspec.Raw(b"[1,2]")}, "sale is not a JSON object"),
        ({"sale": msgspec.Raw(b'{"total": 1e999}')}, "no canonical JSON form"),
        ({"id": ""}, "must be non-empty"),
        ({"sale": msgspec.Raw(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}")}, "nested too deeply"),
    ],
)
def test_malformed_entries_are_rejected_with_the_reason(
    store: CollectorStore, change: dict[str, object], problem: str
) -> None:
    entry = msgspec.structs.replace(make_chain(1)[0], **change)
    assert store.store_batch(S, T, [entry]) == (1 if entry.seq == 1 else 0)  # held in its slot
    (recorded,) = store.problems()
    assert recorded["kind"] == "invalid"
    assert problem in recorded["detail"]


def test_batches_of_several_terminals_commit_together(
    store: CollectorStore, db: CollectorDb
) -> None:
    a, b = make_chain(3), make_chain(2)
    result = store.store_batches(
        [Batch.of(S, "ta", a[:2]), Batch.of(S, "tb", b), Batch.of(S, "ta", a[2:])]
    )
    assert {key: progress.upto for key, progress in result.items()} == {(S, "ta"): 3, (S, "tb"): 2}


def test_batches_may_come_from_a_generator(store: CollectorStore, db: CollectorDb) -> None:
    chains = {t: make_chain(2) for t in ("ta", "tb")}
    result = store.store_batches(Batch.of(S, t, chain) for t, chain in chains.items())
    assert {key: progress.upto for key, progress in result.items()} == {(S, "ta"): 2, (S, "tb"): 2}
    assert len(rows(db, S, "ta")) == len(rows(db, S, "tb")) == 2


def test_database_failure_fails_the_whole_group_and_stores_nothing(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(3)

    class Failing(list[Entry]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            raise store.dialect.operational_error("disk I/O error")

    failing = Batch(S, "t2", Failing(), Batch.of(S, "t2", []).message)
    with pytest.raises(CollectorStoreError, match="disk I/O error"):
        store.store_batches([Batch.of(S, T, chain), failing])
    assert rows(db) == []
    assert store.problems() == []  # not the batch's fault: nothing quarantined, all retried
    assert store.store_batch(S, T, chain) == 3


def test_state_survives_reopen(db: CollectorDb) -> None:
    chain = make_chain(8)
    first = CollectorStore.open(db.target, received_by="c1")
    first.store_batch(S, T, chain[:3])
    first.store_batch(S, T, chain[5:])
    first.close()
    again = CollectorStore.open(db.target, received_by="c2")
    try:
        rep = report_of(again)
        assert rep["contiguous_upto"] == 3
        assert rep["gaps"] == [[4, 5]]
        assert again.store_batch(S, T, chain[:3]) == 3  # duplicates after a restart
        assert again.store_batch(S, T, chain[3:5]) == 8
        assert report_of(again)["duplicates"] == 3
    finally:
        again.close()


def test_two_connections_on_one_db_share_the_contiguous_prefix(db: CollectorDb) -> None:
    chain = make_chain(6)
    one = CollectorStore.open(db.target, received_by="c1")
    two = CollectorStore.open(db.target, received_by="c2")
    try:
        assert one.store_batch(S, T, chain[3:]) == 0
        assert two.store_batch(S, T, chain[:3]) == 6
        by = dict(db.query("SELECT received_by, count(*) FROM transactions GROUP BY 1"))
        assert by == {"c1": 3, "c2": 3}
    finally:
        one.close()
        two.close()


def test_newer_schema_is_refused(db: CollectorDb) -> None:
    store = CollectorStore.open(db.target)
    store.dialect.set_schema_version(store._conn, SCHEMA_VERSION + 1)
    store.close()
    with pytest.raises(CollectorStoreError, match="newer than this edged"):
        CollectorStore.open(db.target)


def test_foreign_db_is_refused(db: CollectorDb) -> None:
    db.query("CREATE TABLE other (x INTEGER)")
    with pytest.raises(CollectorStoreError, match="not a collector db"):
        CollectorStore.open(db.target)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CollectorStoreError, match="does not exist"):
        CollectorStore.open(str(tmp_path / "nope" / "c.db"))


def test_collector_report_reads_while_the_store_is_open(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(5)
    store.store_batch(S, T, [*chain[:2], *chain[3:]])
    report = collector_report(db.target)
    assert report["transactions"] == 4
    (terminal,) = report["terminals"]
    assert terminal["contiguous_upto"] == 2
    assert terminal["gaps"] == [[3, 3]]
    assert msgspec.json.decode(msgspec.json.encode(report)) == report  # JSON-ready


def test_collector_report_on_missing_db_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CollectorStoreError, match="no collector db"):
        collector_report(f"sqlite:///{tmp_path}/absent.db")
    with pytest.raises(CollectorStoreError, match="sqlite:///PATH"):
        collector_report("mysql://x")


def test_status_command_prints_the_report(
    store: CollectorStore, db: CollectorDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.store_batch(S, T, make_chain(2))
    config = tmp_path / "collector.toml"
    config.write_text(f'[uplink]\nhost = "127.0.0.1"\n[collector]\n{db.config_lines}')
    capsys.readouterr()  # drop the store's log lines
    assert cli_main(["collector", "--config", str(config), "status"]) == 0
    report = msgspec.json.decode(capsys.readouterr().out)
    assert report["terminals"][0]["contiguous_upto"] == 2
    config.write_text('[collector]\ndb = "sqlite:///x.db"\n')
    assert cli_main(["collector", "--config", str(config), "status"]) == 78
    assert "uplink" in capsys.readouterr().err


def forge(
    seq: int,
    prev: bytes,
    *,
    sale: bytes,
    sale_id: str = "9b2c7a52-1f0e-4a53-9c43-6f2b0f4f3a10",
    receipt_no: str = "s1-t1-000001",
    created_at: str = "2026-11-23T09:41:00.123Z",
    prev_hex: str | None = None,
    hash_hex: str | None = None,
) -> Entry:
    """An entry whose hash is computed by the spec over these fields (the format may be off)."""
    sale_json = canonical(msgspec.json.decode(sale))
    digest = entry_hash(prev, entry_bytes(seq, sale_id, receipt_no, created_at, sale_json))
    return Entry(
        seq=seq,
        id=sale_id,
        receipt_no=receipt_no,
        created_at=created_at,
        prev_hash=prev.hex() if prev_hex is None else prev_hex,
        hash=digest.hex() if hash_hex is None else hash_hex,
        sale=msgspec.Raw(sale),
    )


SALE = b'{"id":"x","total":1200,"currency":"EUR"}'


def nested(levels: int) -> bytes:
    """A sale whose objects and arrays nest `levels` deep, the sale object itself included."""
    inner = levels - 1
    return b'{"id":"x","a":' + b"[" * inner + b"1" + b"]" * inner + b"}"


def unhashable_by_spec(sale: bytes) -> Entry:
    """An entry hashed over `sale` as it is, which has no RFC 8785 form (the exact check says
    `invalid`): the fast path must not take those bytes for canonical."""
    digest = entry_hash(GENESIS_HASH, entry_bytes(1, "i1", "r1", "2026-11-23T09:41:00Z", sale))
    return Entry(
        seq=1,
        id="i1",
        receipt_no="r1",
        created_at="2026-11-23T09:41:00Z",
        prev_hash=GENESIS_HASH.hex(),
        hash=digest.hex(),
        sale=msgspec.Raw(sale),
    )


MANY_LINES = b'{"lines":[' + b",".join(b'{"sku":"s","qty":[1]}' for _ in range(200)) + b"]}"
_FAST_CASES: dict[str, tuple[Entry, bool]] = {
    "plain": (forge(1, GENESIS_HASH, sale=SALE), True),
    "sale sent non-canonical": (forge(1, GENESIS_HASH, sale=b'{ "total" : 12, "a":[1, 2] }'), True),
    "float in sale": (forge(1, GENESIS_HASH, sale=b'{"total":1.50,"q":1e21}'), True),
    "seq 2^53-1": (forge(2**53 - 1, b"\x07" * 32, sale=SALE), True),
    "non-ascii receipt": (forge(1, GENESIS_HASH, sale=SALE, receipt_no="Bon-ä-€-𝄞"), False),
    "quote and backslash": (forge(1, GENESIS_HASH, sale=SALE, receipt_no='r"1\\2'), False),
    "control character": (forge(1, GENESIS_HASH, sale=SALE, created_at="2026\n\x7f"), False),
    "prev_hash upper case": (forge(2, b"\xab" * 32, sale=SALE, prev_hex="AB" * 32), False),
    "prev_hash 31 bytes": (forge(2, b"\xab" * 31, sale=SALE), False),
    "hash upper case": (forge(1, GENESIS_HASH, sale=SALE, hash_hex="AB" * 32), False),
    "hash wrong": (forge(1, GENESIS_HASH, sale=SALE, hash_hex="ab" * 32), False),
    "seq 0": (forge(0, GENESIS_HASH, sale=SALE), False),
    "seq 2^53": (forge(2**53, GENESIS_HASH, sale=SALE), False),
    "empty id": (forge(1, GENESIS_HASH, sale=SALE, sale_id=""), False),
    "sale is a list": (msgspec.structs.replace(make_chain(1)[0], sale=msgspec.Raw(b"[1]")), False),
    "sale not json": (msgspec.structs.replace(make_chain(1)[0], sale=msgspec.Raw(b"{x")), False),
    "sale 100 levels deep": (forge(1, GENESIS_HASH, sale=nested(100)), True),
    "sale 101 levels deep": (forge(1, GENESIS_HASH, sale=nested(101)), False),
    "sale with 600 brackets, 4 deep": (forge(1, GENESIS_HASH, sale=MANY_LINES), True),
    "16 digits in a string": (forge(1, GENESIS_HASH, sale=b'{"ref":"12345678901234567"}'), True),
    "integer past 2^53, a double": (forge(1, GENESIS_HASH, sale=b'{"n":9007199254740994}'), True),
    "integer past 2^53, no double": (unhashable_by_spec(b'{"n":9007199254740993}'), False),
    "astral and BMP keys": (
        forge(1, GENESIS_HASH, sale='{"\U0001d11e":1,"\ufffd":2}'.encode()),
        True,
    ),
    "float and string digits": (forge(1, GENESIS_HASH, sale=b'{"a":"0.5","b":0.5}'), True),
}


def test_sale_nested_past_the_limit_is_invalid_even_with_its_hash_right(
    store: CollectorStore, db: CollectorDb
) -> None:
    """The limit is the collector's, not the interpreter's recursion limit: same on every Python."""
    assert store.store_batch(S, T, [forge(1, GENESIS_HASH, sale=nested(101))]) == 1  # held
    (recorded,) = store.problems()
    assert recorded["kind"] == "invalid"
    assert "nested too deeply (over 100 levels" in recorded["detail"]
    assert store.store_batch(S, "t2", [forge(1, GENESIS_HASH, sale=nested(100))]) == 1
    assert rows(db, S, "t2") != []


@pytest.mark.parametrize("case", sorted(_FAST_CASES))
def test_fast_check_gives_the_reference_verdict_and_body(case: str) -> None:
    entry, fast = _FAST_CASES[case]
    assert check_entry(entry) == _check_entry_exact(entry)
    # Plain entries take the fast path; anything unusual is left to the reference check.
    assert (_accept_fast(entry) is not None) is fast


def test_fast_check_refuses_a_hash_over_non_canonical_entry_bytes() -> None:
    sale = b'{"total":1}'
    head = b'{"id":"i1","created_at":"2026-11-23T09:41:00.123Z","receipt_no":"r1",'
    sloppy = head + b'"sale":' + sale + b',"seq":1}'  # keys out of RFC 8785 order
    entry = Entry(
        seq=1,
        id="i1",
        receipt_no="r1",
        created_at="2026-11-23T09:41:00.123Z",
        prev_hash=GENESIS_HASH.hex(),
        hash=entry_hash(GENESIS_HASH, sloppy).hex(),
        sale=msgspec.Raw(sale),
    )
    checked = check_entry(entry)
    assert isinstance(checked, Rejected)
    assert checked.kind == "bad_hash"


def test_batch_larger_than_one_insert_statement_is_stored_whole(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(2 * INSERT_ROWS_MAX + 3)
    assert store.store_batch(S, T, chain) == len(chain)
    assert [r[0] for r in rows(db)] == list(range(1, len(chain) + 1))
    rep = report_of(store)
    assert (rep["entries"], rep["duplicates"], rep["problems"]) == (len(chain), 0, 0)
    assert store.store_batch(S, T, chain) == len(chain)
    assert report_of(store)["duplicates"] == len(chain)


def test_sale_id_reused_inside_one_batch_keeps_the_lower_seq(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(2)
    reused = forge(3, bytes.fromhex(chain[1].hash), sale=SALE, sale_id=chain[1].id)
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [reused, *chain]) == 3
    assert [(e["seq"], e["kind"]) for e in logs if e["event"] == "entry_held"] == [
        (3, "id_conflict")
    ]
    assert [r[0] for r in rows(db)] == [1, 2]
    (problem,) = store.problems()
    assert (problem["kind"], problem["seq"]) == ("id_conflict", 3)
    assert f"{S}/{T} seq 2" in problem["detail"]


def test_same_seq_twice_in_one_batch_is_judged_in_arrival_order(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(3)
    store.store_batch(S, T, chain[:2])
    # First a seq-3 entry reusing sale id 1, then the genuine seq 3: the first is an id
    # conflict (seq 3 was free when it came) and occupies seq 3, the others are evidence.
    reused = forge(3, bytes.fromhex(chain[1].hash), sale=SALE, sale_id=chain[0].id)
    impostor = make_chain(1, start=3, prev=bytes.fromhex(chain[1].hash), tag="-other")[0]
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [reused, chain[2], impostor]) == 3
    events = [(e["event"], e["kind"]) for e in logs if e["event"].startswith("entry_")]
    assert events == [
        ("entry_held", "id_conflict"),
        ("entry_rejected", "seq_conflict"),
        ("entry_rejected", "seq_conflict"),
    ]
    assert rows(db)[-1] == (2, chain[1].hash)
    kinds = sorted((p["kind"], p["hash"]) for p in store.problems())
    assert kinds == sorted(
        [
            ("id_conflict", reused.hash),
            ("seq_conflict", chain[2].hash),
            ("seq_conflict", impostor.hash),
        ]
    )


def test_problems_of_one_batch_are_recorded_in_seq_order(store: CollectorStore) -> None:
    chain = make_chain(3)
    store.store_batch(S, T, chain[:1])
    impostor = make_chain(1, tag="-other")[0]
    invalid = msgspec.structs.replace(chain[1], prev_hash="Z" * 64)
    with structlog.testing.capture_logs() as logs:
        assert store.store_batch(S, T, [invalid, chain[2], impostor]) == 3
    assert [(e["event"], e["seq"], e["kind"]) for e in logs if "kind" in e] == [
        ("entry_rejected", 1, "seq_conflict"),
        ("entry_held", 2, "invalid"),
    ]
    # Newest first: same timestamp, so the later-recorded (higher seq) comes first.
    assert [(p["seq"], p["kind"]) for p in store.problems()] == [
        (2, "invalid"),
        (1, "seq_conflict"),
    ]


def test_verdicts_checked_before_the_store_are_taken_as_they_are(
    store: CollectorStore, db: CollectorDb
) -> None:
    """The event loop checks the entries (Batch.verified) while the store thread writes the
    group before: the store takes those verdicts, each with its entry, and checks nothing again."""
    chain = make_chain(3)
    verified = Batch.of(S, T, [chain[2], chain[0], chain[1]]).verified()
    assert verified.checked == [check_entry(e) for e in verified.entries]
    judged = [verified.checked[0], verified.checked[1], Rejected("invalid", "judged early")]
    batch = replace(verified, checked=judged)  # the event loop's verdict on seq 2: invalid
    assert store.store_batches([batch])[(S, T)].upto == 3
    assert [r[0] for r in rows(db)] == [1, 3]
    (problem,) = store.problems()
    assert (problem["kind"], problem["seq"], problem["detail"]) == ("invalid", 2, "judged early")


def test_held_seqs_at_both_ends_of_a_later_batch_are_met_by_their_sales(
    store: CollectorStore, db: CollectorDb
) -> None:
    """A batch's valid sales for seqs that slots hold (its first and its last seq here) go
    through the slots, never straight into `transactions` beside them."""
    chain = make_chain(4)
    tampered = [
        msgspec.structs.replace(e, sale=msgspec.Raw(bytes(e.sale).replace(b'"total":', b'"t":')))
        for e in chain
    ]
    assert store.store_batch(S, T, [tampered[0], chain[1], tampered[2], tampered[3]]) == 4
    assert report_of(store)["held"] == 3
    assert store.store_batch(S, T, [chain[0], chain[1], chain[2]]) == 4
    assert store.store_batch(S, T, [chain[2], chain[3]]) == 4  # a resend ahead of the slot
    assert [r[0] for r in rows(db)] == [1, 2, 3, 4]
    rep = report_of(store)
    assert (rep["held"], rep["entries"], rep["duplicates"]) == (0, 4, 2)


def test_nothing_to_acknowledge_is_upto_zero(store: CollectorStore) -> None:
    """store_batch's answer for a batch that gave its terminal no progress (quarantined)."""
    entry = msgspec.structs.replace(make_chain(1)[0], sale=None)  # breaks the check
    assert store.store_batch(S, T, [entry]) == 0
    assert [p["kind"] for p in store.problems()] == ["quarantined"]


def test_only_a_batch_that_stored_sales_says_so(store: CollectorStore) -> None:
    chain = make_chain(2)
    with structlog.testing.capture_logs() as logs:
        store.store_batch(S, T, chain)
        store.store_batch(S, T, chain)  # duplicates: nothing stored
    assert [(e["inserted"], e["upto"]) for e in logs if e["event"] == "entries_stored"] == [(2, 2)]


def test_problems_lists_the_latest_hundred_unless_asked_for_more(store: CollectorStore) -> None:
    chain = make_chain(101)
    broken = [msgspec.structs.replace(e, prev_hash="Z" * 64) for e in chain]  # invalid, each
    store.store_batch(S, T, broken)
    assert len(store.problems()) == 100
    assert len(store.problems(limit=200)) == 101


def test_reads_of_a_closed_store_are_clear_errors(db: CollectorDb) -> None:
    store = CollectorStore.open(db.target)
    store.store_batch(S, T, make_chain(1))
    assert {key: progress.upto for key, progress in store.current_acks().items()} == {(S, T): 1}
    store.close()
    for read in (store.current_acks, store.terminal_report, store.problems):
        with pytest.raises(CollectorStoreError, match="cannot read"):
            read()


def test_a_second_collector_waits_while_the_first_writes_for_the_terminal(db: CollectorDb) -> None:
    """Two collectors on one database: each write transaction is the terminal's only writer
    (SQLite: BEGIN IMMEDIATE; PostgreSQL: the terminal's advisory lock), so a batch waits for
    the other collector's commit instead of reading a state about to change."""
    chain = make_chain(2)
    opened, go = threading.Event(), threading.Event()
    answers: list[int] = []

    def second() -> None:
        two = CollectorStore.open(db.target, received_by="c2")
        try:
            opened.set()
            go.wait(10)
            answers.append(two.store_batch(S, T, chain))
        finally:
            two.close()

    one = CollectorStore.open(db.target, received_by="c1")  # creates the database
    writer = threading.Thread(target=second)
    writer.start()
    try:
        assert opened.wait(10)

        def hold(conn: object, now: str) -> bool:
            go.set()
            writer.join(1.0)
            return writer.is_alive()

        assert one._write(hold, [(S, T)]) is True  # the second one waited for this commit
        writer.join(10)
        assert answers == [2]
    finally:
        go.set()
        writer.join(10)
        one.close()


def test_a_write_the_database_refuses_is_a_clear_error(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(3)
    store.store_batch(S, T, chain[2:])
    db.query("DROP TABLE rebuilds")  # a database that is not what this edged made of it
    with pytest.raises(CollectorStoreError, match="cannot write"):
        store.plan_resend((S, T), (1, 2))
    assert store.store_batch(S, T, chain[:2]) == 3  # rolled back: the connection goes on
