"""Poison messages: whatever one message holds, it is stored or quarantined, alone.

Messages go through the collector's real path (parse_delivery, then store_batches on a real
database, SQLite and PostgreSQL); only the broker is left out.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.collector.link import Delivery
from edged.collector.service import MAX_TX_PAYLOAD_BYTES, parse_delivery
from edged.collector.store import (
    QUARANTINE_SEQ,
    RAW_KEPT_BYTES,
    Batch,
    CollectorStore,
    Message,
    Progress,
    Quarantine,
    TerminalKey,
)
from edged.wire import SEQ_MAX, Topics, TxBatch, encode
from tests.support.collectordb import CollectorDb
from tests.support.entries import make_chain

PREFIX = "edged/v1"
S = "s1"
GOOD_N = 3


def delivery(payload: bytes, terminal: str = "tp", topic: str | None = None) -> Delivery:
    return Delivery(topic or Topics(PREFIX, S, terminal).tx, payload, mid=1, qos=1)


def tx_payload(terminal: str, entries: list[Any]) -> bytes:
    return encode(TxBatch(v=1, store=S, terminal=terminal, entries=entries))


def with_seq(payload: bytes, seq: int) -> bytes:
    """The payload with its first entry's seq replaced (json keeps integers of any size)."""
    data = json.loads(payload)
    data["entries"][0]["seq"] = seq
    return json.dumps(data).encode()


def uptos_of(acks: dict[TerminalKey, Progress]) -> dict[TerminalKey, int]:
    return {key: progress.upto for key, progress in acks.items()}


def quarantined(db: CollectorDb) -> list[tuple[Any, ...]]:
    return [
        (*r[:4], bytes(r[4]), *r[5:])  # PostgreSQL's bytea comes as a memoryview
        for r in db.query(
            "SELECT store_id, terminal_id, topic, hash, raw, raw_size, count FROM problems"
            " WHERE kind = 'quarantined' AND seq = ? ORDER BY rowid",
            (QUARANTINE_SEQ,),
        )
    ]


def test_seq_2_to_the_63_is_quarantined_and_the_rest_of_the_group_is_stored(
    store: CollectorStore, db: CollectorDb
) -> None:
    """The message that crash-looped the collector (OverflowError in SQLite's binding)."""
    poison = with_seq(tx_payload("tp", make_chain(S, "tp", 1)), 2**63)
    group = [
        delivery(tx_payload("t1", make_chain(S, "t1", GOOD_N)), "t1"),
        delivery(poison, "tp"),
        delivery(tx_payload("t2", make_chain(S, "t2", GOOD_N)), "t2"),
    ]
    with structlog.testing.capture_logs() as logs:
        uptos = uptos_of(store.store_batches([parse_delivery(PREFIX, d) for d in group]))
        again = store.store_batches([parse_delivery(PREFIX, group[1])])  # sent once more
    assert uptos == {(S, "t1"): GOOD_N, (S, "t2"): GOOD_N}  # no ack for the poison's terminal
    assert again == {}
    ((store_id, terminal_id, topic, digest, raw, size, count),) = quarantined(db)
    assert (store_id, terminal_id, topic) == (S, "tp", Topics(PREFIX, S, "tp").tx)
    assert (digest, raw, size, count) == (
        hashlib.sha256(poison).hexdigest(),
        poison,
        len(poison),
        2,
    )
    (event, _) = [e for e in logs if e["event"] == "tx_quarantined"]
    assert event["log_level"] == "error"
    assert "$.entries[0].seq" in event["problem"], event


@pytest.mark.parametrize(
    ("seq", "stored"), [(0, False), (-1, False), (1, True), (SEQ_MAX, True), (SEQ_MAX + 1, False)]
)
def test_seq_is_decoded_only_in_1_to_2_to_the_63_minus_1(seq: int, stored: bool) -> None:
    payload = with_seq(tx_payload("tp", make_chain(S, "tp", 1)), seq)
    assert isinstance(parse_delivery(PREFIX, delivery(payload)), Batch) is stored


def test_a_batch_the_store_cannot_take_is_rolled_back_alone(
    store: CollectorStore, db: CollectorDb
) -> None:
    """Values that pass decoding's bounds but break SQL still hurt nobody else.

    Built by hand, as no decoded message can carry them: a seq SQL cannot bind, a terminal
    name with a lone surrogate. Earlier batches of the same terminal in the group still count.
    """
    t1 = make_chain(S, "t1", 4)
    huge = msgspec.structs.replace(make_chain(S, "t1", 1)[0], seq=2**64)
    odd = "t\ud800"
    group: list[Batch | Quarantine] = [
        Batch.of(S, "t1", t1[:2]),
        Batch(S, "t1", [*t1[2:], huge], Message("edged/v1/s1/t1/tx", b"evidence")),
        Batch(S, odd, make_chain(S, "t3", 1), Message("edged/v1/s1/t3/tx", b"more")),
        Batch.of(S, "t2", make_chain(S, "t2", GOOD_N)),
    ]
    with structlog.testing.capture_logs() as logs:
        uptos = uptos_of(store.store_batches(group))
    assert uptos == {(S, "t1"): 2, (S, "t2"): GOOD_N}  # t1's seq 3..4 went with the bad batch
    rows = quarantined(db)
    assert [(r[1], r[4]) for r in rows] == [("t1", b"evidence"), ("t?", b"more")]
    failed = [e for e in logs if e["event"] == "tx_quarantined"]
    too_big = "OverflowError" if db.backend == "sqlite" else "NumericValueOutOfRange"
    assert [e["problem"].split(":")[1].strip() for e in failed] == [too_big, "UnicodeEncodeError"]
    assert all(e["exc_info"] is not None for e in failed)  # a traceback, in case it is a bug
    assert store.store_batch(S, "t1", t1[2:]) == 4  # the terminal's stream goes on


@pytest.mark.parametrize(
    ("payload", "topic", "problem"),
    [
        (b"\xff\xfe not json", None, "malformed"),
        (b"x" * (MAX_TX_PAYLOAD_BYTES + 1), None, f"over {MAX_TX_PAYLOAD_BYTES}"),
        (b"{}", "edged/v1//tp/tx", "topic is not"),
        (b'{"v":1,"store":"s1","terminal":"tp","entries":[],"x":1}', None, "unknown field"),
    ],
)
def test_malformed_messages_are_quarantined_with_a_bounded_copy(
    store: CollectorStore, db: CollectorDb, payload: bytes, topic: str | None, problem: str
) -> None:
    item = parse_delivery(PREFIX, delivery(payload, topic=topic))
    assert isinstance(item, Quarantine)
    assert problem in item.reason
    assert store.store_batches([item]) == {}
    ((_, _, _, digest, raw, size, count),) = quarantined(db)
    assert (digest, size, count) == (hashlib.sha256(payload).hexdigest(), len(payload), 1)
    assert raw == payload[:RAW_KEPT_BYTES]
    (listed,) = store.problems()
    assert (listed["kind"], listed["size"], listed["detail"]) == ("quarantined", size, item.reason)


# --- fuzzing whole messages -------------------------------------------------------------------

_BASE = tx_payload("tf", make_chain(S, "tf", 2))
_FIELDS = ["v", "store", "terminal", "entries"]
_ENTRY_FIELDS = ["seq", "id", "receipt_no", "created_at", "prev_hash", "hash", "sale"]
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, 2**63 - 1, -(2**63) - 1, 2**64, 0, -1, 2**53])
    | st.floats()
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_json(draw: st.DrawFn) -> bytes:
    """The base message with one field, top level or of an entry, set to any JSON value."""
    data = json.loads(_BASE)
    entry = data["entries"][draw(st.integers(0, 1))]
    target, keys = draw(st.sampled_from([(data, _FIELDS), (entry, _ENTRY_FIELDS)]))
    key = draw(st.sampled_from([*keys, "unexpected"]))
    if draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(_json_values)
    return json.dumps(data, ensure_ascii=draw(st.booleans())).encode()


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """The base message with a few bytes overwritten, inserted or cut."""
    data = bytearray(_BASE)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        chunk = draw(st.binary(min_size=1, max_size=8))
        match draw(st.sampled_from(["put", "insert", "cut"])):
            case "put":
                data[at : at + len(chunk)] = chunk
            case "insert":
                data[at:at] = chunk
            case "cut":
                del data[at : at + len(chunk)]
    return bytes(data)


_messages = st.one_of(st.just(_BASE), st.binary(max_size=300), mutated_json(), mutated_bytes())
_GOOD = [delivery(tx_payload(t, make_chain(S, t, GOOD_N)), t) for t in ("g1", "g2")]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(payload=_messages, position=st.integers(0, 2))
def test_fuzzed_message_is_stored_or_quarantined_and_never_hurts_the_others(
    store: CollectorStore, db: CollectorDb, payload: bytes, position: int
) -> None:
    """Any message, among two good ones of other terminals: the defined outcome, nothing else.

    One database for all examples (the good ones come again as resends, as in real life).
    """
    group = [*_GOOD]
    group.insert(position, delivery(payload, "tf"))
    uptos = uptos_of(store.store_batches([parse_delivery(PREFIX, d) for d in group]))
    assert uptos[(S, "g1")] == uptos[(S, "g2")] == GOOD_N
    in_quarantine = hashlib.sha256(payload).hexdigest() in {r[3] for r in quarantined(db)}
    processed = (S, "tf") in uptos
    assert in_quarantine != processed, (in_quarantine, processed, payload)
    if payload == _BASE:
        assert uptos[(S, "tf")] == 2


def test_a_batch_whose_check_raises_is_quarantined_by_the_store(
    store: CollectorStore, db: CollectorDb
) -> None:
    """Batch.verified leaves a batch that breaks the check unchecked; the store's own check
    raises under the batch's savepoint and quarantines it alone."""
    t1 = make_chain(S, "t1", 3)
    broken = msgspec.structs.replace(t1[1], sale=None)  # no decoded message carries this
    bad = Batch(S, "t1", [t1[0], broken, t1[2]], Message("edged/v1/s1/t1/tx", b"evidence"))
    assert bad.verified() is bad  # checked None: left to the store
    good = Batch.of(S, "t2", make_chain(S, "t2", GOOD_N)).verified()
    assert uptos_of(store.store_batches([bad, good])) == {(S, "t2"): GOOD_N}
    assert [(r[1], r[4]) for r in quarantined(db)] == [("t1", b"evidence")]
    assert store.store_batches([Batch.of(S, "t1", t1).verified()])[(S, "t1")].upto == 3


def test_a_batch_that_fails_after_storing_sales_takes_them_back_from_the_ack(
    store: CollectorStore, db: CollectorDb
) -> None:
    """A batch that stored sales before one of its entries broke the store: the sales are rolled
    back with it, and the acks tell the terminals only what their other batches stored."""
    t1, t2 = make_chain(S, "t1", 4), make_chain(S, "t2", 2)

    def failing(chain: list[Any]) -> list[Any]:
        """The chain with a seq twice (stored entry by entry) and then a seq SQL cannot bind."""
        huge = msgspec.structs.replace(chain[0], seq=2**64)
        return [*chain, chain[-1], huge]

    group: list[Batch | Quarantine] = [
        Batch.of(S, "t1", t1[:2]),
        Batch(S, "t1", failing(t1[2:]), Message("edged/v1/s1/t1/tx", b"one")),
        Batch(S, "t2", failing(t2), Message("edged/v1/s1/t2/tx", b"two")),
    ]
    acks = store.store_batches(group)
    assert uptos_of(acks) == {(S, "t1"): 2}
    assert (acks[(S, "t1")].last_seq, acks[(S, "t1")].last_hash) == (2, t1[1].hash)
    assert db.query("SELECT terminal_id, seq FROM transactions ORDER BY 1, 2") == [
        ("t1", 1),
        ("t1", 2),
    ]
    assert uptos_of(store.current_acks()) == {(S, "t1"): 2}
    ((entries, held),) = db.query("SELECT entries, held FROM terminals")
    assert (entries, held) == (2, 0)
    assert [(r[1], r[4]) for r in quarantined(db)] == [("t1", b"one"), ("t2", b"two")]
