"""systemd notification protocol (sd_notify) over the datagram socket in $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    """Sends READY/STATUS/STOPPING/WATCHDOG; does nothing when not run by systemd."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        self._failing = False  # said once per streak of failures, and said when it ends
        self.watchdog_interval_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 2_000_000  # ping at half the interval
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> None:
        """Send one datagram of newline-separated fields such as `READY=1`."""
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            said = log.debug if self._failing else log.warning
            said("sd_notify_failed", socket=self._address, error=str(exc))
            self._failing = True
            return
        if self._failing:
            log.info("sd_notify_works_again", socket=self._address)
            self._failing = False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
