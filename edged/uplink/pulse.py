"""A broadcast wake-up: every waiter at the time of fire() wakes; nothing is queued."""

from __future__ import annotations

import asyncio


class Pulse:
    """Like asyncio.Event, but fire() wakes the current waiters and re-arms at once."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()
