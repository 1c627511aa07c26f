"""A virtual serial barcode scanner on a pty pair, reached through a stable symlink.

It writes what a real serial scanner sends — prefix, optional AIM identifier, code, suffix —
so the driver under test (or `driver = "sim"` in the demo) runs its real serial code path.
Like a udev symlink, `link_path` points at the current pty while plugged and is gone while
unplugged; `unplug()` closes the master end (the driver's read fails), `replug()` makes a new
pty pair (a new tty name, as after a real re-plug) and re-points the link.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from edged.devices.scanner.codec import AIM_IDS
from edged.errors import EdgedError
from edged.sim.cable import PtyPair, point

log = structlog.get_logger(__name__)


class SimScannerError(EdgedError):
    """The simulator was asked for something a real scanner could not do now."""


class SimScanner:
    """A scanner you tell to scan; see the module docstring."""

    def __init__(
        self, link_path: str | os.PathLike[str], *, prefix: bytes = b"", suffix: bytes = b"\r"
    ) -> None:
        self.link_path = Path(link_path)
        self.prefix = prefix
        self.suffix = suffix
        self._pair: PtyPair | None = None
        self.tty_name: str | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, link_path: str | os.PathLike[str], *, prefix: bytes = b"", suffix: bytes = b"\r"
    ) -> AsyncIterator[SimScanner]:
        """A plugged-in simulator for the duration of the block; unplugged afterwards."""
        sim = cls(link_path, prefix=prefix, suffix=suffix)
        sim.replug()
        try:
            yield sim
        finally:
            sim.unplug()

    @property
    def path(self) -> str:
        """The stable path to configure the driver with."""
        return str(self.link_path)

    @property
    def plugged(self) -> bool:
        return self._pair is not None

    def scan(self, code: str, symbology: str | None = None) -> None:
        """Send one code; `symbology` ("ean-13", or an AIM id like "]d2") adds its AIM id."""
        aim = ""
        if symbology is not None:
            aim = symbology if symbology.startswith("]") else AIM_IDS.get(symbology, "")
            if not aim:
                known = ", ".join(sorted(AIM_IDS))
                raise SimScannerError(f"unknown symbology {symbology!r}; known: {known}")
        self.send(self.prefix + (aim + code).encode("utf-8") + self.suffix)

    def send(self, data: bytes) -> None:
        """Write raw bytes (line noise, half a frame ...) as the scanner's output."""
        if self._pair is None:
            raise SimScannerError("the simulated scanner is unplugged; replug() it first")
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._pair.master, view)
            except BlockingIOError:
                raise SimScannerError(
                    "the pty is full: nothing has read the scanner's output"
                ) from None
            view = view[written:]

    def unplug(self) -> None:
        """Pull the cable: the link disappears and the driver's reads fail."""
        with contextlib.suppress(FileNotFoundError):
            if self.link_path.is_symlink():
                self.link_path.unlink()
        if self._pair is not None:
            self._pair.close()
        self._pair = None
        if self.tty_name is not None:
            log.info("sim_scanner_unplugged", path=self.path, tty=self.tty_name)
        self.tty_name = None

    def replug(self) -> None:
        """Plug in (again): a new pty pair, and the link re-pointed at it."""
        if self.link_path.exists() and not self.link_path.is_symlink():
            raise SimScannerError(f"{self.link_path} exists and is not a symlink; not touching it")
        self.unplug()
        self._pair = PtyPair()
        self.tty_name = self._pair.tty
        point(self.link_path, self.tty_name)
        log.info("sim_scanner_plugged", path=self.path, tty=self.tty_name)
