"""The forwarding pump: drains the journal's unacknowledged tail to the broker, in seq order.

Batches of up to batch_max entries, at most `window` batches awaiting the collector's ack,
cumulative acks slide the window, and anything not acked within ack_timeout_s (or across a
reconnect) is sent again from acked_upto: delivery is at least once, the collector dedupes.
Woken by new commits (journal.wait_committed), by acks and by its own deadlines; no polling.
A resend the store asks for (resend.py) shares the window with the tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import msgspec
import structlog

from edged.backlog import Thresholds, outbox_data
from edged.errors import JournalFullError
from edged.events import EventHub
from edged.journal import Journal, StoredEntry
from edged.journal.damaged import damaged_event
from edged.signing import Signer, tx_signed_bytes
from edged.uplink.ackgate import AckGate
from edged.uplink.client import Connection, Incoming
from edged.uplink.pulse import Pulse
from edged.uplink.resend import ResendCursor
from edged.uplink.storeclock import StoreClock
from edged.wire import (
    WIRE_VERSION,
    Ack,
    Entry,
    ResendAnswer,
    TxBatch,
    decode_ack,
    decode_resend,
    encode,
)

log = structlog.get_logger(__name__)

# Until the first ack on a connection, resend after 1 s, 2 s, 4 s ... up to ack_timeout_s: a
# broker that just restarted without persistence may not have the collector's subscription
# yet, and drops what a terminal that reconnected first publishes.
FIRST_ACK_TIMEOUT_S = 1.0
# A new journal waits this long after connecting for the store's retained ack before it
# concludes that the store holds nothing for its terminal id (edged.journal.adoption).
ADOPTION_WAIT_S = 2.0
OUTBOX_EVENT_MIN_INTERVAL_S = 0.5  # `outbox` events during a drain, at most this often
BATCH_MAX_BYTES = 1 << 20  # brokers often cap messages; 1 MiB is safe for mosquitto & co.
ENTRY_OVERHEAD_BYTES = 400  # JSON around one sale: keys, hashes, ids (for the byte cap only)


@dataclass(slots=True)
class _InFlight:
    first: int
    last: int
    sent_at: float  # monotonic


def encode_batch(
    store: str, terminal: str, entries: list[StoredEntry], signer: Signer | None = None
) -> bytes:
    """The tx payload; each entry keeps its own seq, ids and hashes (StoredEntry.wire_sale).
    Signed by `signer` over the entries' seqs and hashes (edged.signing.tx_signed_bytes)."""
    sig = None
    if signer is not None:
        sig = signer.sign(
            tx_signed_bytes(store, terminal, [(e.seq, e.hash.hex()) for e in entries])
        )
    return encode(
        TxBatch(
            v=WIRE_VERSION,
            store=store,
            terminal=terminal,
            entries=[
                Entry(
                    seq=e.seq,
                    id=e.id,
                    receipt_no=e.receipt_no,
                    created_at=e.created_at,
                    prev_hash=e.prev_hash.hex(),
                    hash=e.hash.hex(),
                    sale=msgspec.Raw(e.wire_sale()),
                )
                for e in entries
            ],
            sig=sig,
        )
    )


def _cap_bytes(entries: list[StoredEntry]) -> list[StoredEntry]:
    """The longest prefix (at least one entry) that stays under BATCH_MAX_BYTES."""
    total = 0
    for i, e in enumerate(entries):
        # A damaged row goes as base64: 4/3 of its bytes.
        size = len(e.sale_json) if e.damage is None else len(e.sale_json) * 4 // 3
        total += size + ENTRY_OVERHEAD_BYTES
        if total > BATCH_MAX_BYTES and i > 0:
            return entries[:i]
    return entries


class Forwarder:
    """Drains the journal over one connection at a time (run() per connection)."""

    def __init__(
        self,
        journal: Journal,
        events: EventHub,
        *,
        store: str,
        terminal: str,
        tx_topic: str,
        ack_topic: str,
        batch_max: int,
        window: int,
        ack_timeout_s: float,
        changed: Pulse,
        signer: Signer,
        acks: AckGate,
        backlog: Thresholds | None = None,
        others: Callable[[Incoming], Awaitable[bool]] | None = None,
    ) -> None:
        self._others = others  # messages on further topics (reference data): True if taken
        self._journal = journal
        self._backlog = backlog or Thresholds()  # the `outbox` event's severity
        self._signer = signer
        self._acks = acks  # which acks and resend requests to act on: the pinned key's
        self._events = events
        self._store = store
        self._terminal = terminal
        self._tx_topic = tx_topic
        self._ack_topic = ack_topic
        base = tx_topic.removesuffix("/tx")
        self.resend_topic = f"{base}/resend"
        self._resend_answer_topic = f"{base}/resend_answer"
        self._resend: ResendCursor | None = None
        self.store_gap: tuple[int, int] | None = None  # seqs the store asked for, purged here
        self._batch_max = batch_max
        self._window = window
        self._ack_timeout_s = ack_timeout_s
        self._wake = asyncio.Event()
        self._changed = changed  # fired on every ack that moves acked_upto
        self._inflight: deque[_InFlight] = deque()
        self._next_after = 0  # the next batch starts after this seq
        self.store_clock: StoreClock | None = None  # from the latest ack that carried `at`
        self.batches_sent = 0
        self.resends = 0  # go-back-N restarts after an ack timeout
        self._timeout_warned = False
        self._acked_here = False  # an ack arrived on this connection
        self._early_resends = 0  # resends on this connection before its first ack
        self._bogus_warned = False
        self._store_ahead_said: int | None = None
        self._full_warned = False  # an ack could not be recorded: disk full
        self._last_event: tuple[int, int, int] | None = None
        self._last_event_at = 0.0
        self._event_owed = False

    @property
    def in_flight(self) -> int:
        """Batches sent on this connection and not yet fully acknowledged."""
        return len(self._inflight)

    def wake(self) -> None:
        self._wake.set()

    async def run(self, conn: Connection) -> NoReturn:
        """Forward until the connection fails (LinkError from a publish) or cancellation."""
        self._inflight.clear()
        self._next_after = self._journal.stats().acked_upto  # resend whatever was unacked
        if self._resend is not None:  # a fresh cursor: the old connection's publishes are gone
            self._resend = ResendCursor(self._resend.first, self._resend.after, self._resend.upto)
        self._acked_here, self._early_resends = False, 0
        async with asyncio.TaskGroup() as tg:
            if self._journal.adoption_pending:
                tg.create_task(self._adopt_unless_told(), name="uplink-adoption-wait")
            tg.create_task(self._watch_commits(), name="uplink-commit-watch")
            tg.create_task(self._read_acks(conn), name="uplink-ack-reader")
            while True:
                self._wake.clear()
                self._expire(time.monotonic())
                await self._fill(conn, tg)
                self._emit_outbox()
                timeout = self._next_deadline(time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _adopt_unless_told(self) -> None:
        """A store with a history for this terminal has a retained ack on our ack topic, which
        the broker delivers as we subscribe; none within ADOPTION_WAIT_S means no history.
        Once adopted, the renumbered entries are sent."""
        told = False
        while self._journal.adoption_pending:
            try:
                async with asyncio.timeout(ADOPTION_WAIT_S):
                    await self._journal.wait_adopted()
            except TimeoutError:
                if not told:
                    log.info("journal_adoption_no_history", waited_s=ADOPTION_WAIT_S)
                    told = True
                self._journal.resolve_adoption(0)  # or again, if writing it failed (full disk)
        self._wake.set()

    async def _watch_commits(self) -> NoReturn:
        while True:
            await self._journal.wait_committed(self._journal.stats().last_seq)
            self._wake.set()

    async def _read_acks(self, conn: Connection) -> None:
        async for msg in conn.messages():
            if msg.topic == self._ack_topic:
                await self.handle_ack(msg.topic, msg.payload, retained=msg.retain)
            elif msg.topic == self.resend_topic:
                await self.handle_resend(conn, msg.payload)
            elif self._others is None or not await self._others(msg):
                log.warning("mqtt_unexpected_message", topic=msg.topic, size=len(msg.payload))

    def _timeout_s(self) -> float:
        if self._acked_here:
            return self._ack_timeout_s
        return min(self._ack_timeout_s, FIRST_ACK_TIMEOUT_S * 2.0**self._early_resends)

    def _expire(self, now: float) -> None:
        """Go back to acked_upto when the oldest batch waited too long for its ack."""
        timeout_s = self._timeout_s()
        if not self._inflight or now - self._inflight[0].sent_at < timeout_s:
            return
        if not self._acked_here:
            self._early_resends += 1
        acked = self._journal.stats().acked_upto
        oldest = self._inflight[0]
        fields = {
            "first_seq": max(oldest.first, acked + 1),
            "last_sent_seq": self._inflight[-1].last,
            "waited_s": timeout_s,
            "acked_upto": acked,
        }
        if self._timeout_warned or not self._acked_here:
            log.debug("ack_timeout_resend", **fields)
        else:
            self._timeout_warned = True
            log.warning("ack_timeout_resend", **fields)
        self.resends += 1
        self._inflight.clear()
        self._next_after = acked

    async def _fill(self, conn: Connection, tg: asyncio.TaskGroup) -> None:
        if self._journal.adoption_pending:
            return  # provisional entries are never sent: they are renumbered first
        while len(self._inflight) < self._window:
            entries = await self._journal.unacked(self._next_after, self._batch_max)
            if not entries:
                break
            entries = _cap_bytes(entries)
            for entry in entries:
                if entry.damage is not None:
                    self._damaged(entry)
            payload = encode_batch(self._store, self._terminal, entries, self._signer)
            first, last = entries[0].seq, entries[-1].seq
            self._inflight.append(_InFlight(first, last, time.monotonic()))
            self._next_after = last
            self.batches_sent += 1
            # Tasks start in creation order, so paho sends the batches in seq order.
            tg.create_task(
                conn.publish(self._tx_topic, payload, timeout=self._ack_timeout_s),
                name=f"uplink-publish-{first}-{last}",
            )
        await self._fill_resend(conn, tg)

    async def _fill_resend(self, conn: Connection, tg: asyncio.TaskGroup) -> None:
        """Send what the store asked for, at most `window` batches awaiting their PUBACK."""
        while (resend := self._resend) is not None:
            # A window of its own: the tail's batches wait for acks that a store rebuilding
            # gives only once the resend has filled its gap.
            if resend.publishing >= self._window:
                return
            entries = await self._journal.retained(resend.after, resend.upto, self._batch_max)
            if not entries:
                if not resend.publishing:
                    log.info("resend_done", seq_from=resend.first, seq_to=resend.upto)
                    self._resend = None
                return
            entries = _cap_bytes(entries)
            payload = encode_batch(self._store, self._terminal, entries, self._signer)
            first, last = entries[0].seq, entries[-1].seq
            resend.after = last
            resend.publishing += 1
            task = tg.create_task(
                conn.publish(self._tx_topic, payload, timeout=self._ack_timeout_s),
                name=f"uplink-resend-{first}-{last}",
            )
            task.add_done_callback(functools.partial(self._resend_published, resend))

    def _resend_published(self, resend: ResendCursor, _task: asyncio.Task[None]) -> None:
        resend.publishing -= 1
        self._wake.set()

    async def handle_resend(self, conn: Connection, payload: bytes) -> None:
        """Answer a store's resend request and start sending from its `from` (what is purged
        here cannot be: the answer's `retained_from` says so, and it is logged). Only a request
        the ack gate admits counts: signed by the pinned collector key."""
        try:
            request = decode_resend(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._bogus(self.resend_topic, f"malformed resend request: {exc}", payload)
            return
        if not self._acks.admit_resend(request, self.resend_topic):
            return  # not the pinned collector's: no answer, nothing resent
        retained_from = await self._journal.retained_from()
        last_seq = self._journal.stats().last_seq
        upto = min(request.upto or last_seq, last_seq)
        log.warning(
            "resend_requested",
            seq_from=request.from_,
            seq_to=upto,
            retained_from=retained_from,
            reason=request.reason,
        )
        if request.from_ < retained_from:
            self.store_gap = (request.from_, min(retained_from - 1, upto))
            log.error(
                "resend_purged",
                seq_from=self.store_gap[0],
                seq_to=self.store_gap[1],
                hint="the store lacks sales this journal purged after their ack: a permanent "
                "gap there, for a store admin to accept (`edged collector accept-gap`)",
            )
        answer = ResendAnswer(
            v=WIRE_VERSION,
            from_=request.from_,
            upto=request.upto,
            retained_from=retained_from,
            last_seq=last_seq,
        )
        await conn.publish(self._resend_answer_topic, encode(answer), timeout=self._ack_timeout_s)
        first = max(request.from_, retained_from)
        if first > upto:
            return
        if self._resend is None:
            self._resend = ResendCursor(first, first - 1, upto)
        else:
            self._resend.widen(first, upto)
        self._wake.set()

    def resend_status(self) -> dict[str, Any]:
        """The resend under way, and the store's permanent gap if a request told of one."""
        gap = list(self.store_gap) if self.store_gap else None
        return {
            "resend": self._resend.status() if self._resend else None,
            "store_permanent_gap": gap,
        }

    def _damaged(self, entry: StoredEntry) -> None:
        """A damaged entry goes out flagged, so the store keeps it and acks past it: said once
        per seq (journal_entry_damaged, a `journal` event), never stopping the stream."""
        if self._journal.damaged.note(entry):
            self._events.publish("journal", damaged_event(entry))

    def _next_deadline(self, now: float) -> float | None:
        deadlines: list[float] = []
        if self._inflight:
            deadlines.append(self._inflight[0].sent_at + self._timeout_s() - now)
        if self._event_owed:
            deadlines.append(self._last_event_at + OUTBOX_EVENT_MIN_INTERVAL_S - now)
        return max(0.0, min(deadlines)) if deadlines else None

    async def handle_ack(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """Apply a cumulative ack; a bogus one is logged with its topic and problem, ignored.

        A retained ack (the store's last word, delivered as we subscribe) tells the store's
        clock and high-water mark, but acknowledges nothing: it was said about what the store
        had then, and a journal that fell behind may hold other sales under those seqs. They
        are sent, and the store's next ack counts.
        """
        try:
            ack = decode_ack(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._bogus(topic, f"malformed ack: {exc}", payload)
            return
        if not self._acks.admit(ack, topic):
            return
        self.store_clock = StoreClock.heard(ack.at) or self.store_clock
        if self._journal.adoption_pending:  # a new journal: the store's seqs come first
            self._journal.resolve_adoption(ack.upto)
            return
        self._check_behind(ack)
        if retained:
            log.debug("ack_retained", topic=topic, upto=ack.upto, last_seq=ack.last_seq)
            return
        upto = ack.upto
        if self.store_gap is not None and upto >= self.store_gap[1]:
            log.info("store_gap_accepted", seq_from=self.store_gap[0], seq_to=self.store_gap[1])
            self.store_gap = None  # a store admin accepted it: the store acknowledges past it
        acked = self._journal.stats().acked_upto
        if upto <= acked:
            log.debug("ack_stale", topic=topic, upto=ack.upto, acked_upto=acked)
            return
        try:
            acked = await self._journal.mark_acked(upto, store_at=ack.at)
        except JournalFullError as exc:
            # Not lost: the store's next ack is cumulative and says it again. Forwarding goes on.
            report = log.debug if self._full_warned else log.warning
            self._full_warned = True
            report("ack_not_recorded", topic=topic, upto=ack.upto, error=str(exc))
            return
        self._full_warned = False
        self._acked_here = True
        self._bogus_warned = False
        self._timeout_warned = False
        while self._inflight and self._inflight[0].last <= acked:
            self._inflight.popleft()
        self._next_after = max(self._next_after, acked)
        self._changed.fire()
        self._wake.set()

    def _check_behind(self, ack: Ack) -> None:
        """A store that holds seqs past the journal's last one: the journal lost its tail (or
        was replaced); it continues past them with a `journal_gap` entry (invariant 11).

        Only `upto`, the store's unbroken run, is jumped over. Seqs the store holds past a gap
        (`last_seq`) may be anyone's until entries are signed: one forged entry at a seq near
        2**53 would otherwise end this terminal's seqs. They are reported instead.
        """
        store_last = ack.upto
        stats = self._journal.stats()
        if (ack.last_seq or 0) > max(store_last, stats.last_seq):
            self._report_store_ahead(ack, stats.last_seq)
        if store_last <= stats.last_seq:
            return
        reason = (
            f"the store holds seqs up to {store_last} for this terminal but the journal ends at "
            f"seq {stats.last_seq}: its tail was lost, or it was replaced or restored from a copy"
        )
        if not self._journal.skip_past(store_last, reason):
            return
        self._events.publish(
            "journal",
            {
                "kind": "behind_store",
                "missing_from": stats.last_seq + 1,
                "missing_to": store_last,
                "last_seq": stats.last_seq,
            },
        )
        if stats.last_seq > stats.acked_upto:
            log.warning(
                "journal_seqs_may_collide",
                first_seq=stats.acked_upto + 1,
                last_seq=stats.last_seq,
                store_last_seq=store_last,
                hint="sales journaled here after the journal fell behind reuse seqs the store "
                "holds; the store keeps any that differ as seq_conflict evidence",
            )

    def _report_store_ahead(self, ack: Ack, last_seq: int) -> None:
        """Once per connection and value: the store holds seqs past a gap it has."""
        if self._store_ahead_said == ack.last_seq:
            return
        self._store_ahead_said = ack.last_seq
        log.warning(
            "store_holds_seqs_past_a_gap",
            upto=ack.upto,
            store_last_seq=ack.last_seq,
            last_seq=last_seq,
            hint="the store holds entries for this terminal beyond a gap; if this journal lost "
            "them, new sales reuse those seqs and the store keeps them as seq_conflict evidence",
        )

    def _bogus(self, topic: str, problem: str, payload: bytes) -> None:
        fields: dict[str, Any] = {"topic": topic, "problem": problem, "size": len(payload)}
        if self._bogus_warned:
            log.debug("ack_rejected", **fields)
        else:
            self._bogus_warned = True
            log.warning("ack_rejected", **fields)

    def outbox(self) -> dict[str, Any]:
        return outbox_data(self._journal.stats(), self._backlog)

    def _emit_outbox(self) -> None:
        """An `outbox` event when the numbers moved: rate-limited, but always on drain end."""
        data = self.outbox()
        key = (data["pending"], data["acked_upto"], data["last_seq"])
        if key == self._last_event:
            self._event_owed = False
            return
        now = time.monotonic()
        if data["pending"] and now - self._last_event_at < OUTBOX_EVENT_MIN_INTERVAL_S:
            self._event_owed = True
            return
        self._event_owed = False
        self._last_event = key
        self._last_event_at = now
        self._events.publish("outbox", data)
