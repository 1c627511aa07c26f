"""One open connection to the printer: ordered writes, and each reply matched to its request.

The printer answers real-time requests (`DLE EOT`, also those inside print data) and `GS r`
marks in the order they were sent, so a queue of futures per kind is enough to pair them up;
`Link` keeps those queues in step with what it writes, and hands every reply to the driver.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from edged.devices.printer.status import (
    AsbStatus,
    PrintedMark,
    RealTimeReply,
    RealTimeScanner,
    Reply,
    StatusParser,
    Unsolicited,
    paper_sensor_status,
)
from edged.devices.printer.transport import Transport
from edged.devices.state import DeviceGone

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Link:
    """One open connection: ordered writes, typed replies, each matched to its request."""

    def __init__(
        self,
        transport: Transport,
        device: str,
        on_reply: Callable[[Reply], None],
    ) -> None:
        self.transport = transport
        self.name = transport.name
        self._device = device
        self._on_reply = on_reply
        self._parser = StatusParser(device)
        self._scanner = RealTimeScanner()
        self._lock = asyncio.Lock()
        self._real_time: collections.deque[asyncio.Future[RealTimeReply]] = collections.deque()
        self._marks: collections.deque[asyncio.Future[PrintedMark]] = collections.deque()
        self._sends: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()

    async def send(
        self, data: bytes, *, mark: bool = False
    ) -> tuple[list[asyncio.Future[RealTimeReply]], asyncio.Future[PrintedMark] | None]:
        """Write `data` (and `GS r 1` if `mark`); returns the futures of the replies it asks for.

        The write runs as its own task, so a cancelled caller cannot cut a command in half and
        let another write into the middle of it.
        """
        task = asyncio.create_task(self._send(data, mark), name=f"{self._device}-send")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        return await asyncio.shield(task)

    async def _send(
        self, data: bytes, mark: bool
    ) -> tuple[list[asyncio.Future[RealTimeReply]], asyncio.Future[PrintedMark] | None]:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._closed.is_set():
                raise DeviceGone(f"{self.name}: connection closed")
            payload = data + paper_sensor_status() if mark else data
            # Every DLE EOT in the stream is answered, also one that is part of image data.
            real_time: list[asyncio.Future[RealTimeReply]] = []
            for n in self._scanner.feed(payload):
                self._parser.expect_real_time(n)
                real_time.append(loop.create_future())
            self._real_time.extend(real_time)
            printed: asyncio.Future[PrintedMark] | None = None
            if mark:
                self._parser.expect_printed_mark()
                printed = loop.create_future()
                self._marks.append(printed)
            await self.transport.write(payload)
        return real_time, printed

    async def result(self, future: asyncio.Future[T]) -> T:
        """The reply, or DeviceGone if the connection closes first."""
        closed = asyncio.create_task(self._closed.wait())
        waiting: set[asyncio.Future[Any]] = {future, closed}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if future.done() and not future.cancelled():
            return future.result()
        raise DeviceGone(f"{self.name}: connection lost while waiting for the printer")

    async def read_loop(self) -> None:
        while True:
            data = await self.transport.read()
            for item in self._parser.feed(data):
                self._dispatch(item)

    def _dispatch(self, item: Reply | Unsolicited) -> None:
        if isinstance(item, Unsolicited):
            log.warning(
                "printer_unsolicited_status",
                device=self._device,
                byte=f"0x{item.byte:02X}",
                offset=item.offset,
            )
        elif isinstance(item, PrintedMark):
            self._on_reply(item)
            _resolve(self._marks.popleft(), item)
        elif isinstance(item, AsbStatus):
            self._on_reply(item)
        else:
            self._on_reply(item)
            _resolve(self._real_time.popleft(), item)

    async def close(self) -> None:
        self._closed.set()
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        pending: list[asyncio.Future[Any]] = [*self._real_time, *self._marks]
        for future in pending:
            future.cancel()
        await self.transport.close()


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():  # its waiter may have given up (timeout)
        future.set_result(value)
