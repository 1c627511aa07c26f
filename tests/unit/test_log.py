"""Standard-library log records (asyncio, paho) come out as our JSON lines, repeats counted."""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a child: configure() replaces the process-wide logging setup.
CHILD = """
import logging
from edged import log
log.configure()
asyncio_log = logging.getLogger("asyncio")
for _ in range(500):
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        asyncio_log.error("socket.accept() out of system resource\\nsocket: <s>", exc_info=True)
logging.getLogger("paho").warning("lost %s", "broker")
log.RepeatFilter.interval_s = 0.0
asyncio_log.error("socket.accept() out of system resource\\nsocket: <s>")
"""


def test_stdlib_records_are_json_lines_and_repeats_are_counted() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60
    ).stderr
    records = [json.loads(line) for line in out.splitlines()]  # every line is JSON
    assert [(r["logger"], r["level"], r.get("suppressed")) for r in records] == [
        ("asyncio", "error", None),
        ("paho", "warning", None),
        ("asyncio", "error", 499),
    ]
    assert records[0]["event"].startswith("socket.accept() out of system resource")
    assert records[0]["exception"][0]["exc_type"] == "OSError"
