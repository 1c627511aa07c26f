"""A simulated device's serial cable: a raw pty pair, reached through a stable symlink.

Every simulator plugs in the same way a USB-serial device does under udev: a new tty appears
(a new pty pair) and the stable name (the symlink the driver is configured with) is re-pointed
at it, atomically. The simulator keeps the slave open too, so reading the master never fails
while nobody has the device open.
"""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path


class PtyPair:
    """One plug-in: the master end for the simulator, the slave tty for the driver."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        for fd in (self.master, self.slave):
            tty.setraw(fd)
        os.set_blocking(self.master, False)
        self.tty = os.ttyname(self.slave)

    def close(self) -> None:
        """Pull the cable: the driver's reads and writes on the slave fail from now on."""
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def point(link: Path, target: str) -> None:
    """Make `link` a symlink to `target`, replacing any old one atomically (as udev does)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.{os.getpid()}.new")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    temporary.replace(link)
