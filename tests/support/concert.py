"""A Concert E+ driver talking to the simulated terminal over a real pty, for tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edged.devices.payment.concert import ConcertSettings, ConcertTerminal
from edged.devices.state import DeviceState, DeviceStatus
from edged.sim.concert import SimConcertTerminal

# Small protocol times so that silence tests end soon; generous enough for a loaded machine.
FAST = {
    "reply_timeout_s": 2.0,
    "enq_pause_s": 0.05,
    "answer_timeout_s": 2.0,
    "probe_interval_s": 0.1,
}
HANG_GUARD_S = 30.0


async def wait_state(status: DeviceStatus, state: DeviceState) -> None:
    """Until `status` is `state`; fails (rather than hangs) after HANG_GUARD_S."""
    async with asyncio.timeout(HANG_GUARD_S):
        while status.state is not state:
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def concert_rig(
    tmp_path: Path, publish: Any = None, *, run: bool = True, **settings: Any
) -> AsyncIterator[tuple[SimConcertTerminal, ConcertTerminal]]:
    """The simulator plugged in at tmp_path/payment and a driver configured with that path.

    With `run`, the driver's supervision runs and the terminal is READY on entry.
    """
    path = str(tmp_path / "payment")
    async with SimConcertTerminal(path) as sim:
        status = DeviceStatus("payment", publish or (lambda kind, data: None))
        terminal = ConcertTerminal(status, ConcertSettings(path=path, **{**FAST, **settings}))
        if not run:
            yield sim, terminal
            return
        task = asyncio.create_task(terminal.run(), name="concert-under-test")
        try:
            await wait_state(terminal.status, DeviceState.READY)
            yield sim, terminal
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
