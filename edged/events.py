"""In-process event fan-out: publishers never block; each subscriber has a bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from edged.errors import EdgedError

EVENT_TYPES = frozenset({"link", "outbox", "journal", "scanner.scan", "device", "payment"})


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any]


class SubscriberOverflow(EdgedError):
    """A subscriber fell more than its queue size behind and was dropped."""


class Subscription:
    """An async iterator of events; close() unsubscribes. Raises SubscriberOverflow if dropped."""

    def __init__(self, hub: EventHub, types: frozenset[str], maxsize: int) -> None:
        self._hub = hub
        self.types = types
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.overflowed = False

    def _offer(self, event: Event) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self._hub._remove(self)
            self._queue.get_nowait()  # make room for the end marker
            self._queue.put_nowait(None)

    def close(self) -> None:
        self._hub._remove(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            event = await self._queue.get()
            if event is None:
                raise SubscriberOverflow(f"subscriber fell {self._queue.maxsize} events behind")
            yield event


class EventHub:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def subscribe(self, types: Iterable[str], maxsize: int = 256) -> Subscription:
        sub = Subscription(self, frozenset(types), maxsize)
        self._subs.add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        event = Event(type_, data)
        for sub in list(self._subs):
            if type_ in sub.types:
                sub._offer(event)
