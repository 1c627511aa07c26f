"""Find what a test left running: tasks, timers and threads (as aioesphomeapi's tests do).

A task still pending after a test is a component that nobody stopped: in the daemon it would
be a leak or, worse, a part that goes on after its owner thinks it ended.
"""

from __future__ import annotations

import asyncio
import threading
import time

SETTLE_ROUNDS = 20  # loop iterations a finishing task may take to complete
THREAD_GRACE_S = 2.0  # a thread that is just exiting (aiosqlite, executors) may take this


async def leaked_tasks() -> list[asyncio.Task[object]]:
    """Tasks other than the caller that are still pending after a few loop iterations."""
    me = asyncio.current_task()
    for _ in range(SETTLE_ROUNDS):
        pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not pending:
            return []
        await asyncio.sleep(0)
    return pending


def live_timers(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
    """Timers (call_later/call_at) still armed on the loop."""
    scheduled: list[asyncio.TimerHandle] = getattr(loop, "_scheduled", [])
    return [h for h in scheduled if not h.cancelled()]


def describe(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    where = getattr(coro, "__qualname__", repr(coro))
    return f"{task.get_name()} ({where})"


def leaked_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads started during the test that are still alive after a short grace period."""
    deadline = time.monotonic() + THREAD_GRACE_S
    while True:
        new = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not new or time.monotonic() >= deadline:
            return new
        new[0].join(max(0.0, deadline - time.monotonic()))


def stop_unclosed_sqlite() -> int:
    """Stop the worker threads of aiosqlite connections nobody closed (a test that failed
    before its journal's close): they are not daemon threads, so the test process could never
    exit, and a failure would look like a hang. Returns how many were stopped."""
    import gc

    import aiosqlite

    stopped = 0
    for obj in gc.get_objects():
        if isinstance(obj, aiosqlite.Connection) and obj._connection is not None:
            obj.stop()
            stopped += 1
    return stopped
