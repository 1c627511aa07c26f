"""Free loopback ports for per-test servers, outside the kernel's ephemeral range.

A client that keeps reconnecting to a loopback port nobody listens on (a broker that was
killed, a proxy that refuses) is sometimes given that very port as its own source port, and
Linux then connects the socket to itself (TCP simultaneous open): the client believes it is
connected and the server can no longer bind its port. Ports below the ephemeral range are
never handed out as source ports, so this cannot happen to them.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST_PORT = 20000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
ATTEMPTS = 200


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the ephemeral range."""
    high = _ephemeral_low() - 1
    for _ in range(ATTEMPTS):
        port = random.randint(LOWEST_PORT, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOWEST_PORT} and {high}")
