"""Keep one device open: reopen it with backoff after an unplug or an error (invariant 7).

A thin layer over edged.supervise.Supervisor that turns what ended a session into the
device's state. An unplugged device stays `absent` while it is probed (no absent/connecting
flapping), and its log says so once at WARNING, then at DEBUG with a reminder now and then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import serial

from edged.backoff import Backoff
from edged.devices.state import DeviceAbsent, DeviceError, DeviceState, DeviceStatus
from edged.supervise import Fault, RestartPolicy, Supervisor

REOPEN_MIN_S = 0.5
REOPEN_MAX_S = 10.0
STABLE_AFTER_S = 30.0  # a device that stayed open this long starts its backoff afresh


def _cause(exc: BaseException) -> tuple[DeviceState, str] | None:
    """The state and reason a lost session leaves the device in; None for a driver bug."""
    if isinstance(exc, DeviceAbsent):
        return DeviceState.ABSENT, str(exc)
    if isinstance(exc, DeviceError):
        return DeviceState.ERROR, str(exc)
    if isinstance(exc, serial.SerialException):  # pyserial's word for a vanished tty
        return DeviceState.ERROR, f"connection lost: {exc}"
    if isinstance(exc, OSError):
        return DeviceState.ERROR, f"I/O error: {exc.strerror or exc}"
    return None


def device_supervisor(
    status: DeviceStatus,
    session: Callable[[], Awaitable[None]],
    *,
    backoff: Backoff | None = None,
) -> Supervisor:
    """A Supervisor that runs `session()` (open, serve until lost) and keeps `status` true.

    `session` sets READY/BUSY itself once the device answers and raises DeviceError (or
    OSError) when the device is lost.
    """

    def before() -> None:
        if status.state is not DeviceState.ABSENT:
            status.set(DeviceState.CONNECTING, "opening")

    def expected(exc: BaseException) -> Fault | None:
        cause = _cause(exc)
        if cause is None:
            return None
        state, reason = cause
        status.set(state, reason)
        return Fault("device_unavailable", reason)

    def on_failure(error: str) -> None:
        if status.state in (DeviceState.CONNECTING, DeviceState.READY, DeviceState.BUSY):
            # A bug in the driver (logged with its traceback), or a session that just ended.
            status.set(DeviceState.ERROR, "driver failure (see the log)")

    return Supervisor(
        f"device-{status.name}",
        session,
        policy=RestartPolicy(
            min_s=REOPEN_MIN_S, max_s=REOPEN_MAX_S, healthy_after_s=STABLE_AFTER_S
        ),
        expected=expected,
        before=before,
        on_failure=on_failure,
        still_down_event="device_still_unavailable",
        fields={"device": status.name},
        backoff=backoff,
    )


async def keep_open(
    status: DeviceStatus,
    session: Callable[[], Awaitable[None]],
    *,
    backoff: Backoff | None = None,
) -> None:
    """Run `session()` forever, reopening the device after each loss; never lets a fault escape."""
    await device_supervisor(status, session, backoff=backoff).run()
