"""One client of the local API: a reader, its request tasks, an event pump and one writer.

Requests run as their own tasks (at most `max_in_flight` at once, so a pipelining client still
feeds the journal's group commit, and reading pauses at the limit); one writer sends responses
and event notifications from a bounded queue (a frame goes straight to the socket when nothing
is queued or buffered: one task switch less per answer). Answers may use half of that queue: a
client that sends requests without reading the answers is simply not read from until it does.
Events use the rest: a client that does not read them overflows the queue and is disconnected,
so it never blocks the daemon or the other clients.

An unfinished line counts against the server's ByteBudget; malformed frames are logged once,
then as a count per interval and at close (a flood of them writes a few lines, not thousands).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import msgspec
import structlog

from edged.api import codes, jsonrpc
from edged.api.batch import refuse_batch, run_batch
from edged.api.framing import LineDecoder, Oversize
from edged.api.limits import ByteBudget, Tally
from edged.api.methods import Dispatcher
from edged.events import EventHub, SubscriberOverflow, Subscription

log = structlog.get_logger(__name__)

MAX_IN_FLIGHT = 32  # requests of one client handled at once
SEND_QUEUE_MESSAGES = 1024  # responses + events waiting for one client
READ_CHUNK_BYTES = 64 * 1024
WRITE_BATCH_MESSAGES = 64  # messages joined into one write
SEND_TIMEOUT_S = 30.0  # a client that takes nothing for this long is disconnected
FLUSH_TIMEOUT_S = 2.0  # how long a closing connection may take to send what is queued
_SHUTTING_DOWN = (
    "shutting down: the daemon is stopping and did not run this request; retry when it is back"
)
LINGER_S = 1.0  # after a refusal, input is read and dropped this long before closing


def _limit_text(limit: int) -> str:
    mib = 1024 * 1024
    return f"{limit // mib} MiB" if limit and limit % mib == 0 else f"{limit} bytes"


def _peer_credentials(writer: asyncio.StreamWriter) -> dict[str, int]:
    """pid/uid/gid of the connecting process (Linux SO_PEERCRED), for the debug log only."""
    sock = writer.get_extra_info("socket")
    peercred = getattr(socket, "SO_PEERCRED", None)
    if sock is None or peercred is None:
        return {}
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    except OSError:
        return {}
    pid, uid, gid = struct.unpack("3i", raw)
    return {"pid": pid, "uid": uid, "gid": gid}


class Connection:
    """One client: reader, request tasks, event pump and writer, all in one TaskGroup."""

    def __init__(
        self,
        peer: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        dispatcher: Dispatcher,
        events: EventHub,
        *,
        max_frame: int,
        max_in_flight: int,
        send_queue: int,
        budget: ByteBudget,
    ) -> None:
        self.peer = peer
        self._reader = reader
        self._writer = writer
        if hasattr(writer.transport, "max_size"):
            # asyncio's socket transport receives into a fresh buffer of max_size (256 KiB)
            # on every read: past malloc's mmap threshold, so each request cost an
            # mmap/munmap pair. Requests arrive in lines; the reader takes 64 KiB at a time.
            writer.transport.max_size = READ_CHUNK_BYTES
        self._dispatcher = dispatcher
        self._events = events
        self._max_frame = max_frame
        self._budget = budget
        self.peak_buffered = 0  # the most bytes of an unfinished line held at once
        self._bad_frames = Tally("api_bad_frame", peer=peer)
        self._out: asyncio.Queue[bytes] = asyncio.Queue(send_queue)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._answer_budget = max(1, send_queue // 2)
        self._room = asyncio.Event()  # set whenever the send queue or in-flight count shrinks
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.shutting_down = False  # set by the server: answer new requests with -32004
        self.dropped = False
        self.reason = "client closed the connection"
        self._requests = 0
        self._tg: asyncio.TaskGroup | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None

    async def run(self) -> None:
        """Serve the client until it leaves, misbehaves or the server stops reading."""
        log.debug("api_client_connected", peer=self.peer, **_peer_credentials(self._writer))
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._writer_task = tg.create_task(
                    self._write_loop(), name=f"api-client-{self.peer}-writer"
                )
                self._reader_task = tg.create_task(
                    self._read_loop(), name=f"api-client-{self.peer}-reader"
                )
                await asyncio.wait([self._reader_task])
                await self.idle.wait()  # answers to requests already read still go out
                self._stop_pump()
                if not self.dropped:
                    await self._flush()
                self._writer_task.cancel()
            if not self.dropped:
                self._writer.close()
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(FLUSH_TIMEOUT_S):
                        await self._writer.wait_closed()
        finally:
            self._stop_pump()
            self._bad_frames.flush()
            if self.dropped:
                self._writer.transport.abort()
            else:
                self._writer.close()
            log.debug("api_client_disconnected", peer=self.peer, reason=self.reason)

    def stop_reading(self) -> None:
        """Server shutdown: read no more; queued answers are still flushed (bounded)."""
        if self._reader_task is not None:
            self._reader_task.cancel()
            self.reason = "server closing"

    # Session, for methods.py
    def subscribe(self, types: frozenset[str]) -> None:
        """Replace this connection's event subscription; an empty set unsubscribes."""
        self._stop_pump()
        if not types or self.dropped or self._tg is None:
            return
        sub = self._events.subscribe(types, maxsize=self._out.maxsize)
        self._subscription = sub
        self._pump_task = self._tg.create_task(
            self._pump(sub), name=f"api-client-{self.peer}-events"
        )

    async def _read_loop(self) -> None:
        decoder = LineDecoder(self._max_frame)
        held = 0
        try:
            while True:
                # No timeout: a UI that only waits for events sends nothing for hours.
                data = await self._reader.read(READ_CHUNK_BYTES)
                events = decoder.feed(data) if data else decoder.eof()
                fits = self._budget.change(held, decoder.buffered)
                held = decoder.buffered
                self.peak_buffered = max(self.peak_buffered, held)
                for event in events:
                    if isinstance(event, Oversize):
                        self._oversize(event.limit)
                        return
                    await self._handle(event.data)
                if not fits:
                    self._over_budget(held)
                    self._budget.change(held, 0)
                    held = 0
                    await self._discard_input()
                    return
                if not data:
                    return
        except OSError as exc:
            self.reason = f"read failed: {exc}"
        finally:
            self._budget.change(held, 0)
            decoder.clear()  # a closed task's frame may live on in a cycle until the next gc

    def _oversize(self, limit: int) -> None:
        log.info("api_frame_oversize", peer=self.peer, limit=limit)
        self.reason = "frame over the size limit"
        self._send(
            jsonrpc.error_response(
                None,
                codes.INVALID_REQUEST,
                f"invalid request: a line is longer than the {_limit_text(limit)} limit "
                f"({limit} bytes before the newline); closing the connection",
            )
        )

    async def _discard_input(self) -> None:
        """Read and drop what the client still sends, for a moment: closing a socket with
        unread input resets it, and the client would lose the answer saying why."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_S):
                while await self._reader.read(READ_CHUNK_BYTES):
                    pass

    def _over_budget(self, held: int) -> None:
        budget = self._budget
        budget.refusals.note(peer=self.peer, held=held, share=budget.share, limit=budget.limit)
        self.reason = "unfinished lines of all clients over the buffer budget"
        self._send(
            jsonrpc.error_response(
                None,
                codes.OVERLOADED,
                f"overloaded: the unfinished lines of all clients together exceed "
                f"{_limit_text(budget.limit)} ([api] max_buffered_bytes) and this connection "
                f"holds {held} bytes without a newline, more than its share of "
                f"{budget.share} bytes; closing the connection, retry later",
                {"limit": "max_buffered_bytes", "value": budget.limit},
            )
        )

    async def _handle(self, line: bytes) -> None:
        if not line.strip():
            return  # blank lines are ignored, so a client may send them as keep-alives
        await self._wait_for_room()
        message = jsonrpc.parse(line)
        if isinstance(message, jsonrpc.ErrorResponse):
            self._bad_frames.note(code=message.code, error=message.message)  # masked by edged.log
            self._send(message.encode())
            return
        if not self.shutting_down:
            await self._slots.acquire()
            if not self.shutting_down:
                self.in_flight += 1
                self.idle.clear()
                self._requests += 1
                assert self._tg is not None
                what = "batch" if isinstance(message, jsonrpc.Batch) else message.method[:40]
                self._tg.create_task(
                    self._run_request(message),
                    name=f"api-client-{self.peer}-{what}-{self._requests}",
                )
                return
            self._slots.release()
        if isinstance(message, jsonrpc.Batch):
            refused = refuse_batch(message, codes.SHUTTING_DOWN, _SHUTTING_DOWN)
            if refused is not None:
                self._send(refused)
        elif isinstance(message, jsonrpc.Request):
            self._send(
                jsonrpc.error_response(
                    message.id,
                    codes.SHUTTING_DOWN,
                    _SHUTTING_DOWN,
                )
            )

    async def _wait_for_room(self) -> None:
        """Backpressure: answers may fill half the send queue; the rest is left for events.

        A client that sends requests without reading the answers is simply not read from any
        more (its writes block); only an event flood it does not read can overflow the queue.
        """
        while self._out.qsize() + self.in_flight >= self._answer_budget:
            self._room.clear()
            await self._room.wait()

    async def _run_request(
        self, message: jsonrpc.Request | jsonrpc.Notification | jsonrpc.Batch
    ) -> None:
        try:
            if isinstance(message, jsonrpc.Batch):
                response = await run_batch(self._dispatcher, message, self)
            else:
                response = await self._dispatcher.dispatch(message, self)
            if response is not None:
                self._send(response)  # no await before this: a subscribe's answer precedes events
        finally:
            self._slots.release()
            self.in_flight -= 1
            self._room.set()
            if not self.in_flight:
                self.idle.set()

    async def _pump(self, sub: Subscription) -> None:
        try:
            async for event in sub:
                try:
                    frame = jsonrpc.notification("event", {"type": event.type, "data": event.data})
                except (TypeError, msgspec.EncodeError):
                    log.exception("api_event_unencodable", event_type=event.type)
                    continue
                self._send(frame)
                if self.dropped:
                    return
        except SubscriberOverflow as exc:
            self._drop(f"event subscription overflowed: {exc}")
        finally:
            sub.close()

    def _stop_pump(self) -> None:
        if self._pump_task is not None and self._pump_task is not asyncio.current_task():
            self._pump_task.cancel()
        self._pump_task = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _send(self, frame: bytes) -> None:
        if self.dropped:
            return
        transport = self._writer.transport
        if (
            self.in_flight <= 1
            and self._out.empty()
            and transport.get_write_buffer_size() == 0
            and len(frame) < transport.get_write_buffer_limits()[1]
            and not transport.is_closing()
        ):
            # Fast path, the same bytes in the same order as the writer task would send:
            # nothing is queued (the writer takes frames from the queue and writes them
            # without an await in between) and nothing is buffered, and the frame stays under
            # the high-water mark, so the writer's drain() would not have waited either.
            # With several requests in flight the writer's batching (one write for many
            # answers of a group commit) is worth more than the task switch.
            transport.write(frame + b"\n")
            return
        try:
            self._out.put_nowait(frame)
        except asyncio.QueueFull:
            self._drop(
                f"send queue full ({self._out.maxsize} messages): the client does not read "
                "its responses and events"
            )

    async def _write_loop(self) -> None:
        try:
            while True:
                batch = [await self._out.get()]
                while len(batch) < WRITE_BATCH_MESSAGES and not self._out.empty():
                    batch.append(self._out.get_nowait())
                self._room.set()
                batch.append(b"")
                self._writer.write(b"\n".join(batch))
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await self._writer.drain()
                for _ in range(len(batch) - 1):
                    self._out.task_done()
        except TimeoutError:
            self._drop(f"the client took nothing for {SEND_TIMEOUT_S:g} s")
        except OSError as exc:
            self._drop(f"write failed: {exc}")

    async def _flush(self) -> None:
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_S):
                await self._out.join()
        except TimeoutError:
            log.info("api_client_flush_timeout", peer=self.peer, queued=self._out.qsize())

    def _drop(self, reason: str) -> None:
        """Disconnect at once (a slow or broken client); its in-flight requests still finish."""
        if self.dropped:
            return
        self.dropped = True
        self.reason = reason
        log.warning("api_client_dropped", peer=self.peer, reason=reason)
        self._writer.transport.abort()
        current = asyncio.current_task()
        for task in (self._reader_task, self._writer_task):
            if task is not None and task is not current:
                task.cancel()
        self._stop_pump()
