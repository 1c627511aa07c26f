"""`edgectl doctor` must not give an all-clear while sales cannot leave the till (issue 9).

A real daemon behind a fault proxy that cuts it off from a broker doctor reaches directly; a
journal whose unsent sales are old; a device node the daemon's user may not open; and a
technician outside group edged, run as a real unprivileged user.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edged.client import ApiClient
from edged.clock import utc_iso
from edged.journal.store import Journal
from edged.localtime import local_text
from tests.integration.test_edgectl import EDGECTL, RUN_TIMEOUT_S, edgectl
from tests.support.daemon import DaemonProcess, uplink_section
from tests.support.entries import make_chain
from tests.support.faultproxy import FaultProxy
from tests.support.mosquitto import Mosquitto

FAST_LINK = {"online_after_s": 0.2, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}


def checks(run: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in json.loads(run.stdout)["checks"]}


async def link_state(socket: str, wanted: str) -> None:
    """Until the daemon reports the link `wanted`."""
    async with ApiClient(socket) as client, asyncio.timeout(RUN_TIMEOUT_S):
        while (await client.call("status"))["link"]["state"] != wanted:
            await asyncio.sleep(0.05)


async def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    """edgectl in a thread: the fault proxy lives on this test's event loop."""
    return await asyncio.to_thread(edgectl, "doctor", *args)


async def test_doctor_fails_when_the_daemon_cannot_reach_a_broker_that_answers(
    tmp_path: Path, broker: Mosquitto
) -> None:
    async with FaultProxy(broker.port) as proxy:
        daemon = DaemonProcess(tmp_path / "till", uplink=uplink_section(proxy.port, **FAST_LINK))
        # The technician's config names the broker itself; the daemon's path goes through
        # the proxy, which drops its connection and then refuses new ones: the daemon is cut
        # off, doctor is not. (A reset at accept would leave each attempt of the daemon
        # waiting for its CONNACK timeout, slower to show.)
        direct = tmp_path / "direct.toml"
        direct.write_text(daemon.config.read_text().replace(str(proxy.port), str(broker.port)))
        daemon.start()
        try:
            await link_state(daemon.socket, "online")
            await proxy.set_mode("reset")
            await proxy.set_mode("refuse")
            await link_state(daemon.socket, "offline")

            stuck = await doctor("--config", str(direct), "--socket", daemon.socket)
            assert stuck.returncode == 1, stuck.stdout + stuck.stderr
            (line,) = [x for x in stuck.stdout.splitlines() if x.startswith("FAIL")]
            assert line.startswith("FAIL  link")
            assert "the daemon cannot reach a broker that answers" in line
            assert "edgectl logs" in line and "restart edged" in line
            assert stuck.stdout.splitlines()[-1] == "1 check(s) failed: link"
            report = checks(await doctor("--config", str(direct), "--json"))
            assert report["broker mqtt"]["level"] == "OK"
            assert report["link"]["level"] == "FAIL"

            # Through the daemon's own path doctor cannot log in either: the broker line
            # fails, and the link line points there instead of blaming the daemon.
            both = checks(await doctor("--config", str(daemon.config), "--json"))
            assert "FAIL" in {both[n]["level"] for n in both if n.startswith("broker")}, both
            assert both["link"]["level"] == "WARN"
            assert "see the broker lines" in both["link"]["todo"]

            await proxy.set_mode("pass")  # back: doctor's nudge lets it reconnect at once
            healed = await doctor("--config", str(direct), "--json")
            assert healed.returncode == 0, healed.stdout
            assert checks(healed)["link"]["level"] == "OK"
        finally:
            daemon.terminate()


def _stamp(ago: timedelta) -> str:
    return utc_iso((datetime.now(UTC) - ago).timestamp())


async def _journal_with_unsent(path: Path, created_at: str) -> None:
    """A terminal's journal holding two sales stamped `created_at` that nobody acked."""
    journal = await Journal.open(path, store_id="S1", terminal_id="T1")
    await journal.close()
    rows = [
        (e.seq, e.id, e.receipt_no, e.created_at, bytes(e.sale).decode(), e.prev_hash, e.hash)
        for e in make_chain("S1", "T1", 2, created_at=created_at)
    ]
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO entries (seq, id, receipt_no, created_at, sale, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*row[:5], bytes.fromhex(row[5]), bytes.fromhex(row[6])) for row in rows],
        )
    db.close()


async def test_doctor_weighs_the_age_of_the_oldest_unsent_sale(
    tmp_path: Path, broker: Mosquitto
) -> None:
    daemon = DaemonProcess(tmp_path / "till", uplink=uplink_section(broker.port, **FAST_LINK))
    daemon.config.write_text(
        daemon.config.read_text().replace(
            'terminal_id = "T1"\n', 'terminal_id = "T1"\ntimezone = "Europe/Berlin"\n'
        )
    )
    half_hour = _stamp(timedelta(minutes=30))
    await _journal_with_unsent(Path(daemon.journal), half_hour)
    daemon.start()  # online, but no collector acks: the two sales stay unsent
    try:
        await link_state(daemon.socket, "online")
        run = await doctor("--config", str(daemon.config))
        assert run.returncode == 0, run.stdout  # a WARN does not fail
        (line,) = [x for x in run.stdout.splitlines() if x.split()[1:2] == ["outbox"]]
        assert line.startswith("WARN  outbox")
        shown = local_text(half_hour, ZoneInfo("Europe/Berlin"))  # the store's time, as status
        assert f"edged reports 2 sales not acknowledged by the store, the oldest since {shown}" in (
            line
        )
        assert "(30m)" in line
        (link,) = [x for x in run.stdout.splitlines() if x.split()[1:2] == ["link"]]
        assert re.search(r" since [-\d]+ [:\d]+ CES?T \(\d+s ago\)$", link), link
        (clock,) = [x for x in run.stdout.splitlines() if x.split()[1:2] == ["clock"]]
        assert re.search(r" now [-\d]+ [:\d]+ CES?T;", clock), clock
    finally:
        daemon.terminate()

    # With the daemon stopped doctor reads the journal file, and five hours is a FAIL.
    stale = tmp_path / "stale.db"
    await _journal_with_unsent(stale, _stamp(timedelta(hours=5)))
    args = ("--config", str(daemon.config), "--journal", str(stale))
    run = await doctor(*args)
    assert run.returncode == 1
    outbox = checks(await doctor(*args, "--json"))["outbox"]
    assert outbox["level"] == "FAIL", outbox
    assert "the journal file holds 2 sales not acknowledged" in outbox["found"]
    assert "(5h 00m)" in outbox["found"]
    assert "outbox" in run.stdout.splitlines()[-1]

    # A stamp ahead of this clock has no age: doctor says so and points at the clock.
    ahead = tmp_path / "ahead.db"
    await _journal_with_unsent(ahead, _stamp(timedelta(hours=-2)))
    report = checks(await doctor("--config", str(daemon.config), "--journal", str(ahead), "--json"))
    assert report["outbox"]["level"] == "WARN", report["outbox"]
    assert "ahead of this clock: how long it waits is unknown" in report["outbox"]["found"]
    assert "ago" not in report["outbox"]["found"]
    assert report["clock"]["level"] == "FAIL"


@pytest.fixture
def throwaway_user() -> Iterator[pwd.struct_passwd]:
    """A real unprivileged user in no group but its own, removed afterwards."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create a user")
    name = f"edt{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


def _scanner_config(tmp_path: Path, node: str) -> Path:
    config = tmp_path / "edged.toml"
    config.write_text(
        '[terminal]\nstore_id = "S1"\nterminal_id = "T1"\n'
        f'[journal]\npath = "{tmp_path / "journal.db"}"\n'
        f'[api]\nsocket = "{tmp_path / "edged.sock"}"\n'
        f'[devices.scanner]\ndriver = "serial"\npath = "{node}"\n'
    )
    return config


def test_doctor_checks_device_nodes_as_the_daemons_user(
    tmp_path: Path, throwaway_user: pwd.struct_passwd
) -> None:
    controller, tty = os.openpty()  # /dev/pts/N: root:tty 0620, closed to the daemon's user
    try:
        node = os.ttyname(tty)
        config = _scanner_config(tmp_path, node)
        user = throwaway_user.pw_name
        run = edgectl("doctor", "--config", str(config), "--daemon-user", user)
        assert run.returncode == 1
        (line,) = [x for x in run.stdout.splitlines() if x.split()[1:2] == ["scanner"]]
        assert line.startswith("FAIL  scanner"), run.stdout
        assert f"{node} crw" in line  # the mode and owner as `ls -l` shows them
        assert f": user {user} may not read and write it -> make the udev rule give it" in line
        assert run.stdout.splitlines()[-1].endswith(", scanner")  # socket fails too: no daemon
        who = checks(edgectl("doctor", "--config", str(config), "--daemon-user", user, "--json"))
        assert who["daemon user"]["level"] == "OK"
        assert f"user {user} (groups {user}; from --daemon-user)" in who["daemon user"]["found"]

        os.chown(node, throwaway_user.pw_uid, -1)  # as a udev rule would hand it over
        fixed = edgectl("doctor", "--config", str(config), "--daemon-user", user, "--json")
        assert checks(fixed)["scanner"]["level"] == "OK", fixed.stdout

        try:
            pwd.getpwnam("edged")
        except KeyError:  # no user edged on this machine: say so, check as root instead
            fallback = checks(edgectl("doctor", "--config", str(config), "--json"))
            assert fallback["daemon user"]["level"] == "WARN"
            assert (
                "user edged (edged.service's User=) does not exist here"
                in (fallback["daemon user"]["found"])
            )
            assert "who may open anything" in fallback["daemon user"]["found"]
    finally:
        os.close(tty)
        os.close(controller)


def _as_user(user: pwd.struct_passwd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        cwd="/",
        # PYTHONPATH: a checkout first on the path stays first for this user too.
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/",
            "LANG": "C.UTF-8",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def test_doctor_tells_a_technician_outside_group_edged_to_join_it(
    throwaway_user: pwd.struct_passwd,
) -> None:
    try:
        usable = _as_user(throwaway_user, sys.executable, "-c", "import edged.ctl.cli")
    except PermissionError:
        usable = None
    if usable is None or usable.returncode != 0:
        pytest.skip(f"{sys.executable} cannot be run by another user (under /root?)")
    base = Path(tempfile.mkdtemp(prefix="edged-doctor-"))
    try:
        base.chmod(0o755)
        daemon = DaemonProcess(base / "edged")  # its folder stays root's, 0750 like /run/edged
        daemon.start()
        try:
            daemon.workdir.chmod(0o750)
            run = _as_user(
                throwaway_user,
                EDGECTL,
                "doctor",
                "--socket",
                daemon.socket,
                "--journal",
                daemon.journal,
                "--config",
                str(daemon.config),
            )
        finally:
            daemon.terminate()
        assert run.returncode == 1, run.stdout + run.stderr
        lines: dict[str, Any] = {x.split()[1]: x for x in run.stdout.splitlines()[:-1]}
        assert lines["socket"].startswith("FAIL  socket"), run.stdout
        for name in ("config", "socket", "journal"):
            assert (
                "join group edged (`sudo usermod -aG edged $USER`, then log in again)"
                in (lines[name])
            ), run.stdout
        assert "systemctl start" not in run.stdout
    finally:
        shutil.rmtree(base)


def test_doctor_holds_the_password_file_to_one_rule(
    broker: Mosquitto, throwaway_user: pwd.struct_passwd
) -> None:
    """0600, owned by the daemon's user: FAIL if it may not read it, WARN if others may; a
    technician who may not read it gets a WARN that says so, not a FAIL with a wrong hint."""
    user = throwaway_user.pw_name
    base = Path(tempfile.mkdtemp(prefix="edged-secret-"))
    try:
        base.chmod(0o755)
        secret = base / "broker.password"
        secret.write_text("pw-of-the-till\n")
        secret.chmod(0o600)  # root's: closed to the daemon's user
        config = base / "edged.toml"
        config.write_text(
            '[terminal]\nstore_id = "S1"\nterminal_id = "T1"\n'
            f'[journal]\npath = "{base / "journal.db"}"\n[api]\nsocket = "{base / "s.sock"}"\n'
            + uplink_section(broker.port, username="s1-t1", password_file=str(secret))
        )
        config.chmod(0o644)

        def line(*extra: str) -> dict[str, str]:
            run = edgectl("doctor", "--config", str(config), "--json", *extra)
            return checks(run)["password file"]

        closed = line("--daemon-user", user)
        assert closed["level"] == "FAIL"
        assert f"user {user} may not read it" in closed["found"]
        assert closed["todo"] == f"chown {user}:{user} {secret} && chmod 0600 {secret}"
        os.chown(secret, throwaway_user.pw_uid, throwaway_user.pw_gid)
        secret.chmod(0o640)
        assert line("--daemon-user", user)["level"] == "WARN"  # the group reads it too
        secret.chmod(0o600)
        assert line("--daemon-user", user)["level"] == "OK"

        os.chown(secret, 0, 0)  # the daemon is root here; the technician is not
        try:
            tech = _as_user(
                throwaway_user, EDGECTL, "doctor", "--config", str(config), "--json",
                "--daemon-user", "root",
            )  # fmt: skip
        except PermissionError:
            pytest.skip(f"{EDGECTL} cannot be run by another user (under /root?)")
        if not tech.stdout.startswith("{"):
            pytest.skip(f"edgectl does not run as another user here: {tech.stderr[-200:]}")
        seen = checks(tech)
        assert seen["password file"]["level"] == "OK", seen["password file"]
        assert seen["broker mqtt"]["level"] == "WARN", seen["broker mqtt"]
        assert "closed to this user, as it should be" in seen["broker mqtt"]["found"]
        assert "sudo edgectl doctor" in seen["broker mqtt"]["todo"]
    finally:
        shutil.rmtree(base)
