"""Wait for a condition instead of sleeping a fixed time; a condition that never comes fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

WAIT_S = 20.0  # the hang detector, not a performance bound
POLL_S = 0.01


async def until(condition: Callable[[], object], what: str = "", timeout_s: float = WAIT_S) -> None:
    """Return once `condition()` is true; AssertionError naming `what` after `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"not reached within {timeout_s:g} s: {what or condition}") from None


async def until_awaited(
    probe: Callable[[], Awaitable[object]], what: str = "", timeout_s: float = WAIT_S
) -> None:
    """`until` for a condition that must be awaited (an API call, a broker round trip)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await probe():
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"not reached within {timeout_s:g} s: {what or probe}") from None
