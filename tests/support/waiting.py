"""Wait for a condition instead of sleeping a fixed time; a condition that never comes fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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
