"""One way to keep a component running: each attempt in a task of its own, restarted with backoff.

Every long-lived part of edged (the uplink, the API server, the journal's housekeeping, each
device) runs under a Supervisor, so one fault stays local (invariant 7) and a stop that nobody
asked for is never taken for a clean one (invariant 10).

Why a task per attempt: on CPython 3.11.x a TaskGroup whose child failed leaves its enclosing
task with a pending cancellation count, and on 3.11.2 (Debian 12) every later
`asyncio.timeout()` in that task then raises CancelledError instead of TimeoutError. A fresh
task per attempt keeps that residue inside the attempt that made it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import structlog

from edged.backoff import Backoff
from edged.carddata import redact
from edged.errors import EdgedError

log = structlog.get_logger(__name__)

T = TypeVar("T")

RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # an attempt that ran this long starts its backoff afresh
STILL_DOWN_REMINDER_S = 600.0  # a WARNING now and then while a fault lasts


class ComponentFailed(EdgedError):
    """A component kept failing unexpectedly and cannot be restarted: the daemon must exit."""

    def __init__(self, name: str, failures: int, error: str) -> None:
        self.name = name
        super().__init__(
            f"{name} failed {failures} times in a row without recovering (last: {error}); "
            "exiting so that systemd restarts edged — see the log for the tracebacks"
        )


@dataclass(frozen=True, slots=True)
class Fault:
    """An expected failure of an attempt (unplugged, broker gone): retried and logged quietly."""

    event: str  # the log event of the first failure of an outage, e.g. "link_lost"
    error: str  # what went wrong, for a person
    quiet: bool = True  # False: an ERROR every time (still retried, never counted as a bug)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    min_s: float = RESTART_MIN_S
    max_s: float = RESTART_MAX_S
    healthy_after_s: float = HEALTHY_AFTER_S
    reminder_s: float = STILL_DOWN_REMINDER_S
    # Unexpected failures in a row (no healthy run between) before ComponentFailed; None: never.
    give_up_after: int | None = None


def _no_faults(exc: BaseException) -> Fault | None:
    return None


class Supervisor:
    """Runs `attempt()` forever: restarts it after it fails or ends, until the task is cancelled.

    `expected(exc)` tells an expected fault (logged WARNING once per outage, then DEBUG, with a
    reminder every `reminder_s`) from a bug (ERROR with traceback, every time). An attempt that
    returns or is cancelled from inside is logged at ERROR and restarted; one of `fatal` ends
    the supervisor (a retry cannot help). `on_failure(error)` runs after every failed attempt,
    `before()` before every attempt. The component calls `healthy()` once an attempt has proved
    itself (else: after `healthy_after_s`). A `backoff` given replaces the policy's delays
    (tests make them small).
    """

    def __init__(
        self,
        name: str,
        attempt: Callable[[], Awaitable[None]],
        *,
        policy: RestartPolicy = RestartPolicy(),
        expected: Callable[[BaseException], Fault | None] = _no_faults,
        before: Callable[[], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        fatal: tuple[type[Exception], ...] = (),
        still_down_event: str = "component_still_down",
        fields: dict[str, Any] | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._attempt = attempt
        self.policy = policy
        self._expected = expected
        self._before = before
        self._on_failure = on_failure
        self._fatal = fatal
        self._still_down_event = still_down_event
        self._fields = {"component": name, **(fields or {})}
        self.backoff = backoff or Backoff(policy.min_s, policy.max_s, rng)
        self.failed_total = 0  # failed attempts since start
        self.unexpected_in_a_row = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False  # the current outage was logged at WARNING
        self._down_since: float | None = None
        self._reminded_at = 0.0
        self._wake = asyncio.Event()
        self._alive = False  # run() is looping
        self._retry_due: float | None = None  # monotonic; while waiting out a backoff
        self._last_unexpected = False  # the last attempt failed for an unexpected reason

    @property
    def running(self) -> bool:
        """An attempt is running right now (not waiting out a backoff)."""
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Skip the current backoff wait and try again at once."""
        self._wake.set()

    def healthy(self) -> None:
        """The running attempt works: the next failure starts a new outage at `min_s`."""
        self.backoff.reset()
        self.unexpected_in_a_row = 0
        self._warned = False
        self._down_since = None

    def problem(self, now: float, slack_s: float) -> str | None:
        """Why this component is not making progress, or None: for the systemd watchdog.

        Progress means an attempt is running, or the next one is due no more than `slack_s`
        ago (a wait that overran means the loop is stuck).
        """
        if not self._alive:
            return f"{self.name} is not running"
        due = self._retry_due
        if due is not None and self._last_unexpected:
            return f"{self.name} is restarting after an unexpected stop ({self.last_error})"
        if due is not None and now - due > slack_s:
            return f"{self.name} has not retried since its backoff ended (stuck)"
        return None

    async def run(self) -> NoReturn:
        """Loop until cancelled; raises ComponentFailed when `give_up_after` is reached."""
        self._alive = True
        try:
            await self._loop()
        finally:
            self._alive = False
            self._retry_due = None

    async def _loop(self) -> NoReturn:
        me = asyncio.current_task()
        assert me is not None
        while True:
            self._wake.clear()
            if self._before is not None:
                self._before()
            started = time.monotonic()
            self._task = asyncio.create_task(self._call(), name=f"{self.name}-attempt")
            outcome: BaseException | None = None
            try:
                await self._task
            except asyncio.CancelledError as exc:
                outcome = exc
            except Exception as exc:
                outcome = exc
            if me.cancelling():
                raise asyncio.CancelledError  # a stop that was asked for; the attempt ended
            if isinstance(outcome, self._fatal):
                raise outcome
            if time.monotonic() - started >= self.policy.healthy_after_s:
                self.healthy()
            self._failed(outcome)
            delay = self.backoff.next_delay_s()
            log.debug("restart_scheduled", **self._fields, delay_s=round(delay, 3))
            self._retry_due = time.monotonic() + delay
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._retry_due = None

    async def _call(self) -> None:
        await self._attempt()

    def _failed(self, outcome: BaseException | None) -> None:
        self.failed_total += 1
        fault = None
        if isinstance(outcome, Exception):
            fault = self._expected(outcome)
        self._last_unexpected = fault is None
        if fault is not None:
            error = fault.error
            self._log_fault(fault)
        else:
            self.unexpected_in_a_row += 1
            if outcome is None:
                error = "ended although nobody asked it to stop"
                log.error("component_stopped_unexpectedly", **self._fields, restart=True)
            elif isinstance(outcome, asyncio.CancelledError):
                error = "was cancelled from inside although nobody asked it to stop"
                log.error("component_stopped_unexpectedly", **self._fields, error=error)
            else:
                error = f"{type(outcome).__name__}: {outcome}"
                log.error(
                    "component_failed", **self._fields, error=error, exc_info=outcome, restart=True
                )
        # `status`, the watchdog's STATUS= and support bundles show it: mask it as the log does
        error = redact(error)
        self.last_error = error
        if self._on_failure is not None:
            self._on_failure(error)
        limit = self.policy.give_up_after
        if limit is not None and self.unexpected_in_a_row >= limit:
            raise ComponentFailed(self.name, self.unexpected_in_a_row, error)

    def _log_fault(self, fault: Fault) -> None:
        if not fault.quiet:
            log.error(fault.event, **self._fields, error=fault.error)
            return
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = self._reminded_at = now
        if not self._warned:
            self._warned = True
            log.warning(fault.event, **self._fields, error=fault.error)
        elif now - self._reminded_at >= self.policy.reminder_s:
            self._reminded_at = now
            log.warning(
                self._still_down_event,
                **self._fields,
                error=fault.error,
                down_for_s=round(now - self._down_since),
                failed_attempts=self.backoff.failures + 1,
            )
        else:
            log.debug(
                fault.event,
                **self._fields,
                error=fault.error,
                failed_attempts=self.backoff.failures + 1,
            )


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    policy: RestartPolicy = RestartPolicy(),
) -> NoReturn:
    """Keep `run()` running under a Supervisor with the default logging (every failure at ERROR)."""
    await Supervisor(name, run, policy=policy).run()


async def in_own_task(coro: Coroutine[Any, Any, T], name: str) -> T:
    """Await `coro` in a task of its own, so that a TaskGroup failing inside it leaves the
    caller's cancellation count alone (CPython 3.11.2: see the module docstring).

    Cancelling the caller cancels the task and waits for it, as a plain await would.
    """
    return await asyncio.create_task(coro, name=name)


def unwrap(
    group: BaseExceptionGroup[Any], prefer: tuple[type[BaseException], ...] = ()
) -> BaseException:
    """The exception that ended a TaskGroup: the first of a `prefer` type, else the first.

    Re-raise it with `raise unwrap(group) from None` in a plain `except BaseExceptionGroup`:
    on CPython 3.11.2 an exception raised inside `except*` is wrapped in a new group.
    """
    flat: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            flat.append(exc)

    walk(group)
    return next((exc for exc in flat if isinstance(exc, prefer)), flat[0])
