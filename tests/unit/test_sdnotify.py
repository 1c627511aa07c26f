"""sd_notify against a real datagram socket, as systemd provides it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from structlog.testing import capture_logs

from edged.sdnotify import Notifier


def test_sends_fields_to_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path})
        notifier.notify("READY=1", "STATUS=link online")
        assert server.recv(4096) == b"READY=1\nSTATUS=link online"
        notifier.close()


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"edged-test-{os.getpid()}-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.notify("STOPPING=1")
        assert server.recv(4096) == b"STOPPING=1"
        notifier.close()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert Notifier({"WATCHDOG_USEC": "4000000"}).watchdog_interval_s == 2.0
    pid = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": pid}).watchdog_interval_s == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier({}).watchdog_interval_s is None


def test_without_notify_socket_nothing_happens() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.notify("READY=1")


def test_a_vanished_socket_is_said_once_not_raised_and_its_return_is_said(tmp_path: Path) -> None:
    """STATUS= goes out at every change: a socket gone for good must not fill the log."""
    path = str(tmp_path / "notify")
    notifier = Notifier({"NOTIFY_SOCKET": path})
    with capture_logs() as logs:
        for _ in range(5):
            notifier.notify("STATUS=link online")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(path)
            notifier.notify("STATUS=link offline")
            assert server.recv(4096) == b"STATUS=link offline"
        notifier.notify("STATUS=link online")
    notifier.close()
    said = [(entry["event"], entry["log_level"]) for entry in logs]
    assert said == [
        ("sd_notify_failed", "warning"),
        *[("sd_notify_failed", "debug")] * 4,
        ("sd_notify_works_again", "info"),
        ("sd_notify_failed", "warning"),
    ]
