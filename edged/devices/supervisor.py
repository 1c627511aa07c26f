"""Keep one device open: reopen with backoff after an unplug or an error (invariant 7)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import serial
import structlog

from edged.backoff import Backoff
from edged.devices.state import DeviceAbsent, DeviceError, DeviceState, DeviceStatus

log = structlog.get_logger(__name__)

REOPEN_MIN_S = 0.5
REOPEN_MAX_S = 10.0
STABLE_AFTER_S = 30.0  # a device that stayed open this long starts its backoff afresh


async def keep_open(
    status: DeviceStatus,
    session: Callable[[], Awaitable[None]],
    *,
    backoff: Backoff | None = None,
) -> None:
    """Run `session()` (open, serve until lost) forever; never lets a device fault escape.

    `session` sets READY/BUSY itself once the device answers and raises DeviceError (or
    OSError) when the device is lost; this loop records why, waits, and opens it again.
    """
    backoff = backoff or Backoff(REOPEN_MIN_S, REOPEN_MAX_S)
    while True:
        status.set(DeviceState.CONNECTING, "opening")
        started = time.monotonic()
        try:
            await session()
            reason, state = "closed by the driver", DeviceState.ERROR
        except DeviceAbsent as exc:
            reason, state = str(exc), DeviceState.ABSENT
        except DeviceError as exc:
            reason, state = str(exc), DeviceState.ERROR
        except serial.SerialException as exc:  # pyserial's word for a vanished tty
            reason, state = f"connection lost: {exc}", DeviceState.ERROR
        except OSError as exc:
            reason, state = f"I/O error: {exc.strerror or exc}", DeviceState.ERROR
        except Exception:
            log.exception("device_driver_failed", device=status.name)
            reason, state = "driver failure (see the log)", DeviceState.ERROR
        if time.monotonic() - started > STABLE_AFTER_S:
            backoff.reset()
        delay = backoff.next_delay_s()
        status.set(state, reason)
        log.info("device_reopen_scheduled", device=status.name, retry_in_s=round(delay, 2))
        await asyncio.sleep(delay)
