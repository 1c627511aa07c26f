"""Start an edged command as a child process and wait for its READY=1 on a real notify socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

READY_TIMEOUT_S = 20.0


def log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


class ExitedEarly(RuntimeError):
    """The command exited before it was ready; `status` is its exit status."""

    def __init__(self, command: str, status: int, log: Path) -> None:
        super().__init__(f"edged {command} exited {status}:\n{log_tail(log)}")
        self.status = status


class StartedAnyway(RuntimeError):
    """A command expected to refuse its start sent READY=1 instead."""


def run_refused(args: list[str], notify_path: Path, log: Path) -> int:
    """Run `python -m edged.cli ARGS` expecting it to refuse to start: its exit status.

    Raises StartedAnyway (after killing it) if it sent READY=1 instead.
    """
    try:
        proc = spawn_ready(args, notify_path, log)
    except ExitedEarly as exc:
        return exc.status
    proc.kill()
    proc.wait(10)
    raise StartedAnyway(f"edged {args[0]} started where it had to refuse:\n{log_tail(log)}")


def spawn_ready(
    args: list[str],
    notify_path: Path,
    log: Path,
    preexec: Callable[[], object] | None = None,
) -> subprocess.Popen[bytes]:
    """Run `python -m edged.cli ARGS` with NOTIFY_SOCKET; return once it sent READY=1.

    `preexec` runs in the child before exec (e.g. to lower a resource limit)."""
    notify_path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=str(notify_path), EDGED_LOG_FORMAT="json")
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edged.cli", *args],
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509 (tests set a resource limit, no locks)
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise ExitedEarly(args[0], proc.returncode, log)
                try:
                    if b"READY=1" in notify.recv(4096).split(b"\n"):
                        return proc
                except TimeoutError:
                    continue
        except KeyboardInterrupt:  # Ctrl-C (or the demo's SIGTERM) before READY: no orphan
            proc.kill()
            proc.wait(10)
            raise
    proc.kill()
    raise RuntimeError(f"edged {args[0]}: no READY=1 within {READY_TIMEOUT_S}s:\n{log_tail(log)}")
