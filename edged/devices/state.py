"""A device's state as people and POS UIs see it, and the errors drivers raise to change it."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import structlog

from edged.clock import utc_now_iso
from edged.errors import EdgedError

log = structlog.get_logger(__name__)


class DeviceState(enum.StrEnum):
    ABSENT = "absent"  # no device node: unplugged, or a udev symlink that is not there
    CONNECTING = "connecting"  # opening it, or waiting for its first answer
    READY = "ready"
    BUSY = "busy"  # printing, or a payment in progress
    ERROR = "error"  # present but not usable; `detail` says why, for a person


class DeviceError(EdgedError):
    """A device is not usable; the message is the reason a person reads ("paper out")."""


class DeviceAbsent(DeviceError):
    """The device node does not exist (unplugged, or the path or udev rule is wrong)."""


class DeviceGone(DeviceError):
    """The device went away while open (unplug, cable, power): reopen it with backoff."""


class ProtocolError(DeviceError):
    """A device sent bytes that break its protocol; names the device, offset and byte."""


Publish = Callable[[str, dict[str, Any]], None]


class DeviceStatus:
    """The current state of one device; every change is logged and published as `device`."""

    def __init__(self, name: str, publish: Publish) -> None:
        self.name = name
        self._publish = publish
        self.state = DeviceState.ABSENT
        self.detail = "not opened yet"
        self.since = utc_now_iso()

    def set(self, state: DeviceState, detail: str = "") -> None:
        """Record a state; a repeat of the current state and detail changes nothing."""
        if state == self.state and detail == self.detail:
            return
        previous = self.state
        self.state, self.detail, self.since = state, detail, utc_now_iso()
        level = log.warning if state in (DeviceState.ERROR, DeviceState.ABSENT) else log.info
        level("device_state", device=self.name, state=str(state), was=str(previous), detail=detail)
        self._publish("device", self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": str(self.state),
            "detail": self.detail,
            "since": self.since,
        }
