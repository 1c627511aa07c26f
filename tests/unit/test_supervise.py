"""The one supervision primitive: restarts, honest stops, quiet faults, giving up, progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from edged.errors import ConfigError
from edged.supervise import (
    ComponentFailed,
    Fault,
    RestartPolicy,
    Supervisor,
    in_own_task,
    unwrap,
)
from tests.support.waiting import until

FAST = RestartPolicy(min_s=0.001, max_s=0.002)


class Lost(Exception):
    """An expected fault in these tests (a device unplugged, a broker gone)."""


def expect_lost(exc: BaseException) -> Fault | None:
    return Fault("thing_lost", str(exc)) if isinstance(exc, Lost) else None


@contextlib.contextmanager
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def events(captured: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in captured if e["event"] == name]


@contextlib.asynccontextmanager
async def running(supervisor: Supervisor) -> Any:
    task = asyncio.create_task(supervisor.run(), name="supervisor-under-test")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_failed_taskgroup_leaves_later_timeouts_working() -> None:
    """CPython 3.11.2: after a TaskGroup child failed, timeout() in that task raised
    CancelledError; the uplink took it for a stop and never reconnected."""
    seen: list[str] = []

    async def boom() -> None:
        raise Lost("child failed")

    async def attempt() -> None:
        if not seen:
            seen.append("group")
            async with asyncio.TaskGroup() as tg:
                tg.create_task(boom())
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            seen.append("TimeoutError")
        raise Lost("again")

    supervisor = Supervisor("t", attempt, policy=FAST, expected=expect_lost)
    async with running(supervisor) as task:
        await until(lambda: len(seen) >= 3, "two attempts after the failed group")
        assert not task.done()
    assert seen[1:3] == ["TimeoutError", "TimeoutError"]


async def test_in_own_task_keeps_the_callers_cancellation_count() -> None:
    async def boom() -> None:
        raise Lost("child failed")

    async def group() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(boom())

    with pytest.raises(ExceptionGroup):
        await in_own_task(group(), "group")
    me = asyncio.current_task()
    assert me is not None
    assert me.cancelling() == 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(10)


async def test_an_unexpected_exception_is_an_error_with_traceback_and_a_restart() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        await asyncio.Event().wait()

    supervisor = Supervisor("part", attempt, policy=FAST)
    with logs() as captured:
        async with running(supervisor):
            await until(lambda: calls == 2 and supervisor.running, "the restart")
    (failed,) = events(captured, "component_failed")
    assert failed["log_level"] == "error"
    assert failed["component"] == "part"
    assert isinstance(failed["exc_info"], RuntimeError)
    assert supervisor.last_error == "RuntimeError: a bug"


@pytest.mark.parametrize("how", ["returns", "cancelled_inside"])
async def test_an_unasked_stop_is_an_error_and_a_restart_never_a_clean_end(how: str) -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            if how == "returns":
                return
            raise asyncio.CancelledError  # as a stray cancel() from inside would end it
        await asyncio.Event().wait()

    supervisor = Supervisor("part", attempt, policy=FAST)
    with logs() as captured:
        async with running(supervisor) as task:
            await until(lambda: calls == 2, "the restart")
            assert not task.done()
    (stopped,) = events(captured, "component_stopped_unexpectedly")
    assert stopped["log_level"] == "error"


async def test_a_stop_that_was_asked_for_ends_quietly_and_cancels_the_attempt() -> None:
    cancelled = asyncio.Event()

    async def attempt() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    supervisor = Supervisor("part", attempt, policy=FAST)
    with logs() as captured:
        task = asyncio.create_task(supervisor.run())
        await until(lambda: supervisor.running, "the first attempt")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert cancelled.is_set()
    assert not [e for e in captured if e["log_level"] in ("warning", "error")]
    assert supervisor.problem(time.monotonic(), 1.0) == "part is not running"


async def test_an_attempt_that_swallows_the_stop_still_stops() -> None:
    async def attempt() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    supervisor = Supervisor("part", attempt, policy=FAST)
    task = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.running, "the first attempt")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert supervisor.failed_total == 0


async def test_expected_faults_warn_once_then_debug_then_remind() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise Lost(f"gone {calls}")

    quiet = Supervisor("part", attempt, policy=FAST, expected=expect_lost)
    with logs() as captured:
        async with running(quiet):
            await until(lambda: calls >= 5, "five attempts")
    lost = events(captured, "thing_lost")
    assert [e["log_level"] for e in lost[:4]] == ["warning", "debug", "debug", "debug"]
    assert not events(captured, "component_still_down")
    assert not [e for e in captured if e["log_level"] == "error"]

    calls = 0
    reminding = Supervisor(
        "part", attempt, policy=RestartPolicy(0.001, 0.002, reminder_s=0.0), expected=expect_lost
    )
    with logs() as captured:
        async with running(reminding):
            await until(lambda: calls >= 3, "three attempts")
    reminders = events(captured, "component_still_down")
    assert reminders
    assert reminders[0]["log_level"] == "warning"
    assert "down_for_s" in reminders[0]


async def test_a_healthy_attempt_starts_a_new_outage() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            supervisor.healthy()
        raise Lost("gone")

    supervisor = Supervisor("part", attempt, policy=FAST, expected=expect_lost)
    with logs() as captured:
        async with running(supervisor):
            await until(lambda: calls >= 4, "four attempts")
    levels = [e["log_level"] for e in events(captured, "thing_lost")][:4]
    assert levels == ["warning", "debug", "warning", "debug"]


async def test_loud_faults_are_errors_every_time_but_never_give_up() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise Lost("store failed")

    def loud(exc: BaseException) -> Fault | None:
        return Fault("store_failed", str(exc), quiet=False)

    policy = RestartPolicy(0.001, 0.002, give_up_after=2)
    supervisor = Supervisor("part", attempt, policy=policy, expected=loud)
    with logs() as captured:
        async with running(supervisor) as task:
            await until(lambda: calls >= 4, "four attempts")
            assert not task.done()
    assert [e["log_level"] for e in events(captured, "store_failed")][:3] == ["error"] * 3


async def test_unexpected_failures_in_a_row_give_up() -> None:
    async def attempt() -> None:
        raise RuntimeError("the same bug")

    policy = RestartPolicy(0.001, 0.002, give_up_after=3)
    supervisor = Supervisor("part", attempt, policy=policy)
    with logs(), pytest.raises(ComponentFailed, match="part failed 3 times") as caught:
        await asyncio.wait_for(supervisor.run(), 20)
    assert "RuntimeError: the same bug" in str(caught.value)


async def test_a_fatal_error_ends_the_supervisor_at_once() -> None:
    async def attempt() -> None:
        raise ConfigError("edged.toml", "uplink.ca_file", "cannot be read")

    supervisor = Supervisor("part", attempt, policy=FAST, fatal=(ConfigError,))
    with pytest.raises(ConfigError):
        await asyncio.wait_for(supervisor.run(), 20)


async def test_wake_skips_the_backoff() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise Lost("gone")

    slow = RestartPolicy(min_s=3600, max_s=3600)
    supervisor = Supervisor("part", attempt, policy=slow, expected=expect_lost)
    with logs():
        async with running(supervisor):
            await until(lambda: calls == 1 and not supervisor.running, "the first failure")
            supervisor.wake()
            await until(lambda: calls == 2, "the attempt after wake()")


async def test_progress_as_the_watchdog_sees_it() -> None:
    release = asyncio.Event()
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Lost("broker gone")
        if calls == 2:
            raise RuntimeError("a bug")
        await release.wait()

    policy = RestartPolicy(min_s=3600, max_s=3600)
    supervisor = Supervisor("part", attempt, policy=policy, expected=expect_lost)
    now = time.monotonic
    assert supervisor.problem(now(), 1.0) == "part is not running"
    with logs():
        async with running(supervisor):
            await until(lambda: calls == 1 and not supervisor.running, "the expected fault")
            # Waiting out a backoff after an expected fault is progress ...
            assert supervisor.problem(now(), 1.0) is None
            # ... until the wait overruns its end (a loop that hangs).
            assert "has not retried" in str(supervisor.problem(now() + 3600 + 2.0, 1.0))
            supervisor.wake()
            await until(lambda: calls == 2 and not supervisor.running, "the bug")
            assert "restarting after an unexpected stop" in str(supervisor.problem(now(), 1.0))
            supervisor.wake()
            await until(lambda: supervisor.running, "the third attempt")
            assert supervisor.problem(now(), 1.0) is None


def test_unwrap_finds_the_preferred_exception_in_nested_groups() -> None:
    first, preferred = RuntimeError("first"), Lost("wanted")
    group = ExceptionGroup("outer", [first, ExceptionGroup("inner", [preferred])])
    assert unwrap(group, prefer=(Lost,)) is preferred
    assert unwrap(group) is first


async def test_unwrapped_reraise_is_not_wrapped_again() -> None:
    """On 3.11.2 a raise inside `except*` came out as a new group; a plain except does not."""

    async def boom() -> None:
        raise Lost("gone")

    async def group_then_unwrap() -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(boom())
        except ExceptionGroup as group:
            raise unwrap(group) from None

    with pytest.raises(Lost):
        await group_then_unwrap()
