"""A real mosquitto broker per test, on a free loopback port, that a test can stop and restart."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support.ports import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
START_TIMEOUT_S = 10.0


def auth_conf(workdir: Path, passwords: Mapping[str, str], acl: str) -> str:
    """Config lines for a broker that knows only `passwords` (user -> password) and `acl`.

    The files go into `workdir`; append the result to `extra_conf` (after the listener line,
    so listener options among them apply to the test's listener).
    """
    passwd, acl_file = workdir / "passwd", workdir / "acl"
    passwd.unlink(missing_ok=True)
    for user, password in passwords.items():
        create = [] if passwd.exists() else ["-c"]
        subprocess.run([MOSQUITTO_PASSWD, "-b", *create, str(passwd), user, password], check=True)
    acl_file.write_text(acl)
    return f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl_file}\n"


class Mosquitto:
    """One mosquitto process; `port` stays the same across stop() and start()."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"
            "max_queued_messages 10000\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # As root, mosquitto would switch to its own user and could not write the log here.
            + ("user root\n" if os.geteuid() == 0 else "")
            + extra_conf
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        """Stop the broker the hard way (SIGKILL), as a crash or power loss would."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
