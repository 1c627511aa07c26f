"""Pinned terminal keys: the signature check every tx batch passes before it is stored (pins.py).

On a real collector database (SQLite, then PostgreSQL) through store_batches, as the collector
calls it; the broker is left out (tests/integration/test_signed_entries.py has it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import msgspec
import pytest
import structlog

from edged.collector.pins import PinnedKey
from edged.collector.store import Batch, CollectorStore, Progress
from edged.signing import Signer, tx_signed_bytes
from edged.wire import Entry, Sig
from tests.support.collectordb import CollectorDb
from tests.support.entries import make_chain

S, T = "s1", "t1"
KEY = (S, T)
NOW = "2026-12-07T10:00:00.000Z"


def signed(signer: Signer, entries: Sequence[Entry], terminal: str = T) -> Sig:
    return signer.sign(tx_signed_bytes(S, terminal, [(e.seq, e.hash) for e in entries]))


def send(
    store: CollectorStore, entries: Sequence[Entry], sig: Sig | None, terminal: str = T
) -> dict[tuple[str, str], Progress]:
    """One tx batch of `terminal` through the store; what it acknowledges."""
    return store.store_batches([replace(Batch.of(S, terminal, entries), sig=sig)])


def stored(db: CollectorDb, terminal: str = T) -> list[int]:
    return [
        seq
        for (seq,) in db.query(
            "SELECT seq FROM transactions WHERE terminal_id = ? ORDER BY seq", (terminal,)
        )
    ]


def problems(db: CollectorDb) -> list[tuple[Any, ...]]:
    return db.query(
        "SELECT terminal_id, seq, kind, hash, detail, body, count FROM problems ORDER BY kind, seq"
    )


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_an_unsigned_batch_of_an_unpinned_terminal_is_stored_with_one_warning(
    store: CollectorStore, db: CollectorDb
) -> None:
    chain = make_chain(S, T, 4)
    with structlog.testing.capture_logs() as logs:
        first = send(store, chain[:2], None)
        second = send(store, chain[2:], None)
        send(store, make_chain(S, "t2", 1), None, "t2")
    assert (first[KEY].upto, first[KEY].plain) == (2, True)  # the v1 ack, for old edged
    assert (second[KEY].upto, second[KEY].plain) == (4, True)
    assert stored(db) == [1, 2, 3, 4]
    assert [e["terminal"] for e in events(logs, "entries_unsigned")] == [T, "t2"]  # once each
    assert store.pins.get(KEY) is None
    assert problems(db) == []


def test_the_first_signed_batch_pins_its_key_and_later_ones_keep_the_pin(
    store: CollectorStore, db: CollectorDb
) -> None:
    till = Signer.generate()
    chain = make_chain(S, T, 4)
    with structlog.testing.capture_logs() as logs:
        first = send(store, chain[:2], signed(till, chain[:2]))
        second = send(store, chain[2:], signed(till, chain[2:]))
    assert (first[KEY].upto, first[KEY].plain) == (2, False)
    assert (second[KEY].upto, second[KEY].plain) == (4, False)
    assert stored(db) == [1, 2, 3, 4]
    pinned = store.pins.get(KEY)
    assert pinned is not None
    assert (pinned.key, pinned.pinned_by) == (till.public_hex, "first_use")
    assert [e["by"] for e in events(logs, "terminal_key_pinned")] == ["first_use"]  # pinned once
    assert not events(logs, "entries_unsigned")


def test_an_admin_pin_is_kept_by_the_batches_it_admits(
    store: CollectorStore, db: CollectorDb
) -> None:
    till = Signer.generate()
    with store.pins.transaction():
        store.pins.pin(KEY, till.public_hex, by="admin", now=NOW)
    chain = make_chain(S, T, 2)
    assert send(store, chain, signed(till, chain))[KEY].upto == 2
    assert store.pins.all() == [PinnedKey(S, T, till.public_hex, "admin", NOW)]


def forgeries(till: Signer) -> list[tuple[str, Sig | None]]:
    """Batches a terminal whose key is pinned never sends: (what is wrong, its signature)."""
    chain = make_chain(S, T, 2)
    rogue = Signer.generate()
    other = make_chain(S, T, 2, tag="-other")
    return [
        ("unsigned", None),
        ("wrong_key", signed(rogue, chain)),
        ("bad_signature", signed(till, other)),  # the till's signature of other entries
    ]


@pytest.mark.parametrize("kind", ["unsigned", "wrong_key", "bad_signature"])
def test_a_forged_batch_is_kept_as_evidence_and_neither_stored_nor_acknowledged(
    store: CollectorStore, db: CollectorDb, kind: str
) -> None:
    till = Signer.generate()
    with store.pins.transaction():
        store.pins.pin(KEY, till.public_hex, by="admin", now=NOW)
    chain = make_chain(S, T, 2)
    sig = dict(forgeries(till))[kind]
    with structlog.testing.capture_logs() as logs:
        assert send(store, chain, sig) == {}
        assert send(store, chain, sig) == {}  # sent again: counted, not logged again
    assert stored(db) == []
    rows = problems(db)
    assert [(r[0], r[1], r[2], r[3], r[6]) for r in rows] == [
        (T, e.seq, kind, e.hash, 2) for e in chain
    ]
    assert all(r[4].startswith("forged, not stored: ") for r in rows)
    assert all(f'"hash":"{e.hash}"' in r[5] for r, e in zip(rows, chain, strict=True))
    assert [(e["seq"], e["kind"]) for e in events(logs, "entry_forged")] == [
        (1, kind),
        (2, kind),
    ]
    assert store.pins.get(KEY) == PinnedKey(S, T, till.public_hex, "admin", NOW)
    assert send(store, chain, signed(till, chain))[KEY].upto == 2  # the real till goes on


def test_what_a_forgery_is_kept_with_says_which_keys(
    store: CollectorStore, db: CollectorDb
) -> None:
    till, rogue = Signer.generate(), Signer.generate()
    chain = make_chain(S, T, 1)
    send(store, chain, signed(till, chain))
    send(store, chain, None)
    send(store, chain, signed(rogue, chain))
    details = {kind: detail for _, _, kind, _, detail, _, _ in problems(db)}
    assert details == {
        "unsigned": f"forged, not stored: unsigned batch; {till.public_hex} is pinned",
        "wrong_key": f"forged, not stored: signed by key {rogue.public_hex}, "
        f"not by the pinned key {till.public_hex}",
    }
    pinned = store.pins.get(KEY)
    assert pinned is not None
    assert pinned.key == till.public_hex


def test_a_bad_signature_pins_nothing(store: CollectorStore, db: CollectorDb) -> None:
    """Trust on first use trusts a signature that verifies, never one that does not."""
    till = Signer.generate()
    chain = make_chain(S, T, 2)
    assert send(store, chain, signed(till, chain[:1])) == {}
    assert store.pins.get(KEY) is None
    ((kind, detail),) = {(r[2], r[4]) for r in problems(db)}
    assert kind == "bad_signature"
    assert detail == f"forged, not stored: key {till.public_hex}: signature does not verify"
    assert send(store, chain, signed(till, chain))[KEY].upto == 2


def test_without_trust_on_first_use_an_unpinned_terminal_waits_for_the_admin(
    db: CollectorDb,
) -> None:
    store = CollectorStore.open(db.target, trust_on_first_use=False)
    try:
        till = Signer.generate()
        chain = make_chain(S, T, 2)
        with structlog.testing.capture_logs() as logs:
            assert send(store, chain, signed(till, chain)) == {}
            assert send(store, chain, None) == {}
            assert send(store, chain, signed(till, chain)) == {}
        assert stored(db) == []
        assert store.pins.get(KEY) is None
        rows = problems(db)
        assert [(r[1], r[2], r[6]) for r in rows] == [(1, "unpinned", 3), (2, "unpinned", 3)]
        assert rows[0][4] == (
            f"not stored: no key is pinned for this terminal (signed by key {till.public_hex})"
        )
        assert not events(logs, "entry_forged")
        (refused,) = events(logs, "terminal_unpinned")  # once, though the till resends
        assert refused["key"] == till.public_hex

        with store.pins.transaction():
            store.pins.pin(KEY, till.public_hex, by="admin", now=NOW)
        assert send(store, chain, signed(till, chain))[KEY].upto == 2
        assert stored(db) == [1, 2]
        with store.pins.transaction():
            assert store.pins.forget(KEY) is True
        more = make_chain(S, T, 1, start=3, prev=bytes.fromhex(chain[-1].hash))
        with structlog.testing.capture_logs() as logs:
            assert send(store, more, None) == {}  # forgotten: refused again, and said again
        (refused,) = events(logs, "terminal_unpinned")
        assert refused["key"] is None
        assert db.query("SELECT detail FROM problems WHERE seq = 3") == [
            ("not stored: no key is pinned for this terminal (unsigned)",)
        ]
    finally:
        store.close()


def test_a_pinned_terminal_is_admitted_without_trust_on_first_use(db: CollectorDb) -> None:
    store = CollectorStore.open(db.target, trust_on_first_use=False)
    try:
        till = Signer.generate()
        with store.pins.transaction():
            store.pins.pin(KEY, till.public_hex.upper(), by="admin", now=NOW)  # as typed
        chain = make_chain(S, T, 2)
        assert send(store, chain, signed(till, chain))[KEY].upto == 2
        assert send(store, chain, None) == {}
        assert {r[2] for r in problems(db)} == {"unsigned"}
    finally:
        store.close()


def test_pins_are_listed_replaced_and_forgotten(store: CollectorStore, db: CollectorDb) -> None:
    pins = store.pins
    one, two = Signer.generate().public_hex, Signer.generate().public_hex
    assert pins.all() == []
    assert pins.get(KEY) is None
    with pins.transaction():
        pins.pin((S, "t2"), one, by="admin", now=NOW)
        pins.pin(KEY, one, by="first_use", now=NOW)
        pins.pin(KEY, two, by="admin", now="later")  # re-pinned: replaced
    assert pins.all() == [
        PinnedKey(S, T, two, "admin", "later"),
        PinnedKey(S, "t2", one, "admin", NOW),
    ]
    assert db.query("SELECT count(*) FROM terminal_keys") == [(2,)]  # committed
    with structlog.testing.capture_logs() as logs, pins.transaction():
        assert pins.forget(KEY) is True
        assert pins.forget(KEY) is False
        assert pins.forget((S, "t9")) is False  # never pinned
    assert [e["terminal"] for e in events(logs, "terminal_key_forgotten")] == [T]  # once
    assert [p.terminal_id for p in pins.all()] == ["t2"]
    assert db.query("SELECT terminal_id FROM terminal_keys") == [("t2",)]
    with pytest.raises(ValueError, match="64 hex digits"), pins.transaction():
        pins.pin(KEY, "not a key", by="admin", now=NOW)
    assert pins.get(KEY) is None


def test_an_admin_change_that_fails_is_rolled_back(store: CollectorStore, db: CollectorDb) -> None:
    pins = store.pins

    def pin_then_fail() -> None:
        with pins.transaction():
            pins.pin(KEY, Signer.generate().public_hex, by="admin", now=NOW)
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        pin_then_fail()
    assert pins.all() == []
    assert db.query("SELECT count(*) FROM terminal_keys") == [(0,)]
    chain = make_chain(S, T, 1)
    assert send(store, chain, None)[KEY].upto == 1  # the connection is usable: no transaction


def test_admit_answers_true_or_false(db: CollectorDb) -> None:
    """KeyPins.admit on its own, inside an admin's transaction: a bool, never just falsy."""
    store = CollectorStore.open(db.target, trust_on_first_use=False)
    try:
        pins, till = store.pins, Signer.generate()
        chain = make_chain(S, T, 1)
        with pins.transaction():
            assert pins.admit(KEY, chain, signed(till, chain), NOW) is False  # unpinned
            pins.pin(KEY, till.public_hex, by="admin", now=NOW)
            assert pins.admit(KEY, chain, None, NOW) is False  # forged
            assert pins.admit(KEY, chain, signed(till, chain), NOW) is True
        assert [r[2] for r in problems(db)] == ["unpinned", "unsigned"]
    finally:
        store.close()


def test_a_quarantined_batch_pins_no_key(store: CollectorStore, db: CollectorDb) -> None:
    """A signed batch the store cannot take is rolled back whole: the first-use pin of its key
    too, or a poison message would pin whatever key signed it."""
    rogue, till = Signer.generate(), Signer.generate()
    chain = make_chain(S, T, 2)
    poison = [chain[0], msgspec.structs.replace(chain[1], sale=None)]  # breaks the check
    assert send(store, poison, signed(rogue, poison)) == {}
    assert store.pins.get(KEY) is None
    assert [r[2] for r in problems(db)] == ["quarantined"]
    assert send(store, chain, signed(till, chain))[KEY].upto == 2
    pinned = store.pins.get(KEY)
    assert pinned is not None
    assert pinned.key == till.public_hex
