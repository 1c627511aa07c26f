"""`scripts/demo` stopped with SIGTERM cleans up as Ctrl-C does: no edged, collector or
mosquitto left running, no temporary folder left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUARD_S = 120.0  # against hangs, never a measurement


def processes_naming(text: str) -> list[str]:
    """Command lines of running processes that mention `text` (e.g. the demo's folder)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if text in args:
            found.append(args)
    return found


def test_sigterm_stops_everything_and_removes_the_folder() -> None:
    env = dict(os.environ, EDGED_SETUP_DONE="1")  # the venv is there: no pip run
    demo = subprocess.Popen(
        [str(ROOT / "scripts/demo")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert demo.stdout is not None
    work = None
    seen = []
    try:
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "".join(seen)
            seen.append(line)
            if m := re.search(r"running in (\S+)", line):
                work = m.group(1)
            if line.strip().startswith("Sale 1 saved"):  # selling: every process is up
                break
        assert work is not None, "".join(seen)
        assert processes_naming(work), "the demo's processes should be running now"
        demo.send_signal(signal.SIGTERM)
        rest, _ = demo.communicate(timeout=GUARD_S)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert demo.returncode == 130, "".join(seen) + rest
    assert "Stopped." in rest
    assert not Path(work).exists()
    assert processes_naming(work) == []
    assert "sale.commit" not in "".join(seen)  # written for a store manager
