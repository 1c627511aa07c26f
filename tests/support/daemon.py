"""`edged run` and `edged collector` as real child processes that tests can kill and restart."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.support.process import log_tail, run_refused, spawn_ready


class _Process:
    def __init__(self, workdir: Path, command: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.command = command
        self.config = workdir / f"{command}.toml"
        self.log = workdir / f"{command}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.preexec: Callable[[], object] | None = None  # runs in the child before exec

    def start(self) -> None:
        self.starts += 1
        notify = self.workdir / f"notify-{self.command}-{self.starts}"
        args = [self.command, "--config", str(self.config)]
        self.proc = spawn_ready(args, notify, self.log, self.preexec)

    def start_refused(self) -> int:
        """Start it expecting a refusal: its exit status (StartedAnyway if it started)."""
        self.starts += 1
        notify = self.workdir / f"notify-{self.command}-{self.starts}"
        return run_refused([self.command, "--config", str(self.config)], notify, self.log)

    def wait_exit(self, timeout_s: float) -> int | None:
        """Its exit status once it ends by itself, None if it still runs after `timeout_s`."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int:
        """SIGTERM and wait for the clean exit; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log, lines)


def uplink_section(port: int, **settings: object) -> str:
    """An `[uplink]` section for a broker on 127.0.0.1:port; settings as TOML values."""
    lines = ["[uplink]", 'host = "127.0.0.1"', f"port = {port}"]
    for key, value in settings.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines) + "\n"


class DaemonProcess(_Process):
    """One terminal daemon with its own config, journal and socket under `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        store: str = "S1",
        terminal: str = "T1",
        uplink: str = "",
        journal: Path | None = None,
    ) -> None:
        super().__init__(workdir, "run")
        self.store, self.terminal = store, terminal
        self.socket = str(workdir / "edged.sock")
        self.journal = str(journal or workdir / "journal.db")
        self.config.write_text(
            f'[terminal]\nstore_id = "{store}"\nterminal_id = "{terminal}"\n'
            f'[journal]\npath = "{self.journal}"\n[api]\nsocket = "{self.socket}"\n' + uplink
        )


class CollectorProcess(_Process):
    """One store collector with its own SQLite database under `workdir`; or `db`, a SQLite file
    that several collectors share (in their default shared subscription group); or the database
    whose `[collector]` keys `db_lines` gives (collectordb.CollectorDb.config_lines)."""

    def __init__(
        self,
        workdir: Path,
        uplink: str,
        *,
        extra: str = "",
        db: str | None = None,
        db_lines: str | None = None,
    ) -> None:
        super().__init__(workdir, "collector")
        self.db = db or str(workdir / "store.db")
        if db_lines is None:
            db_lines = f'db = "sqlite:///{self.db}"\n'
        self.config.write_text(uplink + "[collector]\n" + db_lines + extra)
