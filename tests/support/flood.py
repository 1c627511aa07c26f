"""A process's resident memory and a flood of hostile API clients: shared by the bounds tests
and scripts/bench, so the suite asserts what the bench reports."""

from __future__ import annotations

import socket
import time
from pathlib import Path


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` now (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def flood_connect(
    path: str, count: int, partial: int, timeout_s: float = 30.0
) -> list[socket.socket]:
    """`count` connections, each sending `partial` bytes without a newline (0: idle)."""
    socks: list[socket.socket] = []
    deadline = time.monotonic() + timeout_s
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        while True:
            try:
                s.connect(path)
                break
            except BlockingIOError:  # the listen backlog is full
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
        socks.append(s)
    chunk = b"x" * 65536
    left = {s: partial for s in socks}
    while left and time.monotonic() < deadline:
        for s in list(left):
            try:
                left[s] -= s.send(chunk[: min(len(chunk), left[s])])
            except BlockingIOError:
                continue
            except OSError:  # refused and closed by the daemon
                left[s] = 0
            if left[s] <= 0:
                del left[s]
        time.sleep(0.001)
    return socks
