"""The forwarder's timing and batching decisions, on a real journal with no connection: when a
batch counts as lost, how long it waits before its first ack, when the loop must wake, and how
a batch is cut under the broker's byte cap."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from structlog.testing import capture_logs

from edged.backlog import Thresholds
from edged.clock import utc_iso
from edged.events import EventHub
from edged.journal import Journal
from edged.signing import Signer
from edged.uplink.forwarder import (
    BATCH_MAX_BYTES,
    ENTRY_OVERHEAD_BYTES,
    FIRST_ACK_TIMEOUT_S,
    OUTBOX_EVENT_MIN_INTERVAL_S,
    Forwarder,
    _cap_bytes,
    _InFlight,
)
from edged.uplink.pulse import Pulse
from tests.support.entries import make_chain
from tests.support.forwarding import bare_forwarder
from tests.support.sales import cash_sale

TOPIC = "edged/v1/S1/T1/ack"


async def journal_with_sales(tmp_path: Path, n: int, pad: int = 0) -> Journal:
    j = await Journal.open(tmp_path / "j.db", store_id="S1", terminal_id="T1")
    for _ in range(n):
        await j.commit(cash_sale(pad=pad))
    return j


def sent(fwd: Forwarder, first: int, last: int, at: float) -> None:
    """What _fill records for a published batch."""
    fwd._inflight.append(_InFlight(first, last, at))
    fwd._next_after = last


async def test_an_ack_timeout_clears_the_window_and_goes_back_to_acked_upto(
    tmp_path: Path,
) -> None:
    j = await journal_with_sales(tmp_path, 30)
    fwd = bare_forwarder(j)  # ack_timeout_s=1.0
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":5}')
    sent(fwd, 6, 15, at=100.0)
    sent(fwd, 16, 25, at=100.5)
    fwd._expire(100.99)  # not yet
    assert (fwd.in_flight, fwd.resends, fwd._next_after) == (2, 0, 25)
    with capture_logs() as logs:
        fwd._expire(101.0)
    assert (fwd.in_flight, fwd.resends, fwd._next_after) == (0, 1, 5)
    assert [(e["event"], e["log_level"]) for e in logs] == [("ack_timeout_resend", "warning")]
    assert logs[0]["waited_s"] == 1.0
    assert (logs[0]["first_seq"], logs[0]["last_sent_seq"], logs[0]["acked_upto"]) == (6, 25, 5)
    fwd._expire(200.0)  # nothing in flight: nothing to resend
    assert fwd.resends == 1
    await j.close()


async def test_before_the_first_ack_resends_come_after_1_2_4_s_up_to_ack_timeout(
    tmp_path: Path,
) -> None:
    j = await journal_with_sales(tmp_path, 3)
    fwd = bare_forwarder(j)
    fwd._ack_timeout_s = 5.0
    waits = []
    now = 0.0
    for _ in range(5):
        sent(fwd, 1, 3, at=now)
        timeout = fwd._timeout_s()
        fwd._expire(now + timeout - 0.01)
        assert fwd.in_flight == 1  # not early
        fwd._expire(now + timeout)
        assert fwd.in_flight == 0
        waits.append(timeout)
        now += timeout
    assert waits == [FIRST_ACK_TIMEOUT_S, 2.0, 4.0, 5.0, 5.0]
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":1}')  # the first ack: the full timeout now
    assert fwd._timeout_s() == 5.0
    fwd._ack_timeout_s = 0.5
    assert fwd._timeout_s() == 0.5
    await j.close()


async def test_no_deadline_at_idle_only_the_oldest_batch_and_an_owed_event(
    tmp_path: Path,
) -> None:
    """Idle, the loop sleeps until woken: it has no deadline to poll on."""
    j = await journal_with_sales(tmp_path, 3)
    fwd = bare_forwarder(j)
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":1}')  # the full ack timeout (1 s) applies
    now = time.monotonic()
    assert fwd._next_deadline(now) is None
    sent(fwd, 2, 2, at=now - 0.25)
    sent(fwd, 3, 3, at=now)
    assert abs(fwd._next_deadline(now) - 0.75) < 1e-9  # type: ignore[operator]
    assert fwd._next_deadline(now + 5) == 0.0  # overdue: at once, never negative
    fwd._inflight.clear()
    fwd._event_owed, fwd._last_event_at = True, now - 0.1
    assert abs(fwd._next_deadline(now) - 0.4) < 1e-9  # type: ignore[operator]
    await j.close()


async def test_wake_sets_what_the_loop_waits_on(tmp_path: Path) -> None:
    """sync.now wakes the forwarder: its loop waits on this event with no deadline at idle."""
    j = await journal_with_sales(tmp_path, 1)
    fwd = bare_forwarder(j)
    assert (fwd.batches_sent, fwd.resends, fwd.in_flight) == (0, 0, 0)  # the counters start at 0
    assert not fwd._wake.is_set()
    fwd.wake()
    assert fwd._wake.is_set()
    await j.close()


async def test_batches_over_the_byte_cap_are_cut(tmp_path: Path) -> None:
    pad = 300_000
    j = await journal_with_sales(tmp_path, 5, pad=pad)
    entries = await j.unacked(0, 10)
    size = len(entries[0].sale_json) + ENTRY_OVERHEAD_BYTES
    fits = BATCH_MAX_BYTES // size
    assert fits == 3
    assert [e.seq for e in _cap_bytes(entries)] == [1, 2, 3]
    assert [e.seq for e in _cap_bytes(entries[3:])] == [4, 5]
    assert _cap_bytes(entries[:3]) == entries[:3]
    huge = msgspec.structs.replace(entries[0], sale_json=b"x" * (BATCH_MAX_BYTES + 1))
    assert _cap_bytes([huge, *entries]) == [huge]  # alone, never empty
    # a damaged row goes as base64, 4/3 of its bytes: two of them no longer fit with a third
    damaged = [msgspec.structs.replace(e, damage="not JSON") for e in entries]
    assert [e.seq for e in _cap_bytes(damaged)] == [1, 2]
    await j.close()


async def test_the_byte_cap_is_exact_for_intact_and_damaged_entries(tmp_path: Path) -> None:
    """400 bytes of JSON around each sale, a damaged row's bytes as base64 (4/3): entries that
    add up to exactly 1 MiB go in one batch, one byte more cuts the last one off."""
    j = await journal_with_sales(tmp_path, 2)
    a, b = await j.unacked(0, 10)
    half = BATCH_MAX_BYTES // 2 - 400
    exact = [msgspec.structs.replace(e, sale_json=b"x" * half) for e in (a, b)]
    assert _cap_bytes(exact) == exact
    over = [exact[0], msgspec.structs.replace(b, sale_json=b"x" * (half + 1))]
    assert _cap_bytes(over) == over[:1]
    raw = half * 3 // 4  # its base64 is `half` bytes
    damaged = [msgspec.structs.replace(e, sale_json=b"x" * raw, damage="bad") for e in (a, b)]
    assert _cap_bytes(damaged) == damaged
    grown = [damaged[0], msgspec.structs.replace(damaged[1], sale_json=b"x" * (raw + 1))]
    assert _cap_bytes(grown) == grown[:1]
    await j.close()


async def journal_with_an_old_sale(path: Path, minutes: float) -> Journal:
    """A journal whose one unacknowledged sale was stamped `minutes` ago."""
    j = await Journal.open(path, store_id="S1", terminal_id="T1")
    await j.close()
    stamp = utc_iso((datetime.now(UTC) - timedelta(minutes=minutes)).timestamp())
    (e,) = make_chain("S1", "T1", 1, created_at=stamp)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "INSERT INTO entries (seq, id, receipt_no, created_at, sale, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                *(e.seq, e.id, e.receipt_no, e.created_at, bytes(e.sale).decode()),
                *(bytes.fromhex(e.prev_hash), bytes.fromhex(e.hash)),
            ),
        )
    return await Journal.open(path, store_id="S1", terminal_id="T1")


async def test_the_outbox_severity_uses_the_given_thresholds_or_the_defaults(
    tmp_path: Path,
) -> None:
    """A sale unsent for 30 minutes: `warn` by default (15 min), `ok` for a till told to warn
    after an hour, `alarm` for one told to alarm after 20 minutes."""
    j = await journal_with_an_old_sale(tmp_path / "j.db", minutes=30)
    fwd = bare_forwarder(j)
    assert (fwd.outbox()["pending"], fwd.outbox()["severity"]) == (1, "warn")
    for backlog, severity in (
        (Thresholds(warn_after_s=3600.0, alarm_after_s=7200.0), "ok"),
        (Thresholds(warn_after_s=600.0, alarm_after_s=1200.0), "alarm"),
    ):
        told = Forwarder(
            j,
            EventHub(),
            store="S1",
            terminal="T1",
            tx_topic="edged/v1/S1/T1/tx",
            ack_topic=TOPIC,
            batch_max=10,
            window=2,
            ack_timeout_s=1.0,
            changed=Pulse(),
            signer=Signer.generate(),
            acks=fwd._acks,
            backlog=backlog,
        )
        assert told.outbox()["severity"] == severity
    await j.close()


async def test_an_ack_timeout_warns_once_per_acked_connection_and_never_before_its_first_ack(
    tmp_path: Path,
) -> None:
    """Early resends before the first ack are routine (debug); after an ack the first timeout
    warns, the next ones do not, until an ack comes again."""
    j = await journal_with_sales(tmp_path, 30)
    fwd = bare_forwarder(j)  # ack_timeout_s=1.0
    now = 0.0

    def timed_out() -> str:
        nonlocal now
        sent(fwd, fwd._next_after + 1, fwd._next_after + 5, at=now)
        now += fwd._timeout_s()
        with capture_logs() as logs:
            fwd._expire(now)
        (said,) = [e["log_level"] for e in logs if e["event"] == "ack_timeout_resend"]
        return str(said)

    levels = [timed_out()]  # before the first ack
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":5}')
    levels += [timed_out(), timed_out()]
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":10}')
    levels += [timed_out(), timed_out()]
    assert levels == ["debug", "warning", "debug", "warning", "debug"]
    await j.close()


async def test_a_bogus_ack_warns_once_until_a_good_ack_comes(tmp_path: Path) -> None:
    j = await journal_with_sales(tmp_path, 3)
    fwd = bare_forwarder(j)
    with capture_logs() as logs:
        await fwd.handle_ack(TOPIC, b"not json")
        await fwd.handle_ack(TOPIC, b'{"v":1}')
        await fwd.handle_ack(TOPIC, b'{"v":1,"upto":1}')
        await fwd.handle_ack(TOPIC, b"not json")
    assert [e["log_level"] for e in logs if e["event"] == "ack_rejected"] == [
        "warning",
        "debug",
        "warning",
    ]
    await j.close()


async def test_an_ack_that_moves_acked_upto_wakes_the_forwarder_and_sync_now(
    tmp_path: Path,
) -> None:
    """sync.now waits on `changed` for the drain to end: each ack that counts fires it, and
    wakes the forwarder's loop; a stale one does neither."""
    j = await journal_with_sales(tmp_path, 3)
    fwd = bare_forwarder(j)
    waiter = asyncio.create_task(fwd._changed.wait())
    await asyncio.sleep(0)
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":2}')
    async with asyncio.timeout(1.0):
        await waiter
    assert fwd._wake.is_set()
    fwd._wake.clear()
    waiter = asyncio.create_task(fwd._changed.wait())
    await asyncio.sleep(0)
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":1}')
    await asyncio.sleep(0)
    assert not waiter.done() and not fwd._wake.is_set()
    waiter.cancel()
    await j.close()


async def test_an_ack_with_no_last_seq_to_an_empty_journal_reports_nothing_ahead(
    tmp_path: Path,
) -> None:
    """The store holding seq 7 past a gap is said; a later ack without `last_seq` says
    nothing about seqs ahead, even to a journal with none."""
    j = await journal_with_sales(tmp_path, 0)
    fwd = bare_forwarder(j)
    with capture_logs() as logs:
        await fwd.handle_ack(TOPIC, b'{"v":1,"upto":0,"last_seq":7}')
        await fwd.handle_ack(TOPIC, b'{"v":1,"upto":0}')
    said = [(e["event"], e.get("store_last_seq")) for e in logs if e["log_level"] != "debug"]
    assert said == [("store_holds_seqs_past_a_gap", 7)]
    await j.close()


async def test_outbox_events_are_rate_limited_while_pending_and_never_late_at_drain_end(
    tmp_path: Path,
) -> None:
    """One event per change of the numbers, at most one per OUTBOX_EVENT_MIN_INTERVAL_S while
    sales are pending (the rest is owed: a deadline for the loop), at once when none are."""
    j = await journal_with_sales(tmp_path, 3)
    events = EventHub()
    outbox = events.subscribe(["outbox"])
    fwd = bare_forwarder(j, events)

    def emitted() -> list[tuple[int, int]]:
        """(pending, acked_upto) of each event published since the last call."""
        fwd._emit_outbox()
        got = []
        while not outbox._queue.empty():
            event = outbox._queue.get_nowait()
            assert event is not None
            got.append((event.data["pending"], event.data["acked_upto"]))
        return got

    assert (emitted(), fwd._event_owed) == ([(3, 0)], False)
    assert (emitted(), fwd._event_owed) == ([], False)  # nothing moved
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":1}')
    assert (emitted(), fwd._event_owed) == ([], True)  # too soon after the last: owed
    assert fwd._next_deadline(time.monotonic()) is not None
    fwd._last_event_at -= OUTBOX_EVENT_MIN_INTERVAL_S  # as if that long had passed
    assert (emitted(), fwd._event_owed) == ([(2, 1)], False)
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":3}')
    assert (emitted(), fwd._event_owed) == ([(0, 3)], False)  # drained: said at once
    await j.close()


async def test_a_journal_behind_the_store_is_announced_once(tmp_path: Path) -> None:
    """The store's ack says it holds seqs past the journal's end: one `behind_store` event,
    not one per ack until the journal_gap entry is written with the next sale."""
    j = await journal_with_sales(tmp_path, 2)
    events = EventHub()
    journal_events = events.subscribe(["journal"])
    fwd = bare_forwarder(j, events)
    for _ in range(2):
        await fwd.handle_ack(TOPIC, b'{"v":1,"upto":5}')
    said = []
    while not journal_events._queue.empty():
        event = journal_events._queue.get_nowait()
        assert event is not None
        said.append(event.data)
    assert said == [{"kind": "behind_store", "missing_from": 3, "missing_to": 5, "last_seq": 2}]
    await j.close()
