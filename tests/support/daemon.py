"""`edged run` as a real child process, ready when it says READY=1 over a real notify socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

READY_TIMEOUT_S = 20.0


class DaemonProcess:
    """One terminal daemon with its own config, journal and socket under `workdir`."""

    def __init__(
        self, workdir: Path, *, store: str = "S1", terminal: str = "T1", uplink: str = ""
    ) -> None:
        self.workdir = workdir
        self.socket = str(workdir / "edged.sock")
        self.journal = str(workdir / "journal.db")
        self.config = workdir / "edged.toml"
        self.log = workdir / "edged.log"
        self.config.write_text(
            f'[terminal]\nstore_id = "{store}"\nterminal_id = "{terminal}"\n'
            f'[journal]\npath = "{self.journal}"\n[api]\nsocket = "{self.socket}"\n' + uplink
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        notify_path = str(self.workdir / f"notify-{self.starts}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(notify_path)
            notify.settimeout(0.2)
            env = dict(os.environ, NOTIFY_SOCKET=notify_path, EDGED_LOG_FORMAT="json")
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "edged.cli", "run", "--config", str(self.config)],
                    stdout=log,
                    stderr=log,
                    env=env,
                    start_new_session=True,
                )
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"edged exited {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if b"READY=1" in notify.recv(4096).split(b"\n"):
                        return
                except TimeoutError:
                    continue
        raise RuntimeError(f"edged sent no READY=1 within {READY_TIMEOUT_S}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int:
        """SIGTERM and wait for the clean exit; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
