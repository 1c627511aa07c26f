"""The journal's files under a real `edged run`: a lost -wal, init --force, backup, modes."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from edged.client import ApiClient
from edged.journal.verify import verify_journal
from tests.support.daemon import DaemonProcess
from tests.support.waiting import until

EDGECTL = str(Path(sys.executable).with_name("edgectl"))
RUN_TIMEOUT_S = 60


def sale() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": 990,
        "lines": [{"sku": "4006381333931", "qty": 1, "amount": 990}],
        "payments": [{"method": "card", "amount": 990, "masked_pan": "411111******1111"}],
    }


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


def edged_run(daemon: DaemonProcess) -> subprocess.CompletedProcess[str]:
    """`edged run` in the foreground, for a start that is expected to fail."""
    return run(sys.executable, "-m", "edged.cli", "run", "--config", str(daemon.config))


async def commit(socket: str, count: int) -> list[int]:
    async with ApiClient(socket) as client:
        return [(await client.call("sale.commit", {"sale": sale()}))["seq"] for _ in range(count)]


async def test_a_lost_wal_stops_the_start_with_74_and_nothing_initialised(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "till")
    daemon.start()
    try:
        assert await commit(daemon.socket, 10) == list(range(1, 11))
    finally:
        daemon.kill()
    journal = Path(daemon.journal)
    Path(f"{journal}-wal").unlink()  # the careless clean-up after the crash
    before = journal.read_bytes()

    started = edged_run(daemon)
    assert started.returncode == 74, started.stdout + started.stderr
    assert "journal.db-wal" in started.stderr and "after seq 0" in started.stderr
    assert "edgectl journal init --force" in started.stderr
    assert journal.read_bytes() == before
    verify = run(EDGECTL, "journal", "verify", "--config", str(daemon.config))
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "BROKEN" in verify.stdout and "-wal" in verify.stdout
    assert edged_run(daemon).returncode == 74  # the reader's empty -wal changes nothing


async def test_init_force_sets_the_old_journal_aside_and_starts_a_new_one(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "till")
    journal = Path(daemon.journal)
    daemon.start()
    try:
        await commit(daemon.socket, 3)
        running = run(EDGECTL, "journal", "init", "--force", "--config", str(daemon.config))
        assert running.returncode == 2 and "edged is running" in running.stderr
    finally:
        daemon.kill()
    files_before = {p.name for p in journal.parent.iterdir()}
    refused = run(EDGECTL, "journal", "init", "--config", str(daemon.config))
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert {p.name for p in journal.parent.iterdir()} == files_before

    done = run(EDGECTL, "journal", "init", "--force", "--config", str(daemon.config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "edged continues after seq 3" in done.stdout
    aside = sorted(p for p in journal.parent.iterdir() if ".replaced-" in p.name)
    assert [p.name.removeprefix(aside[0].name) for p in aside] == ["", "-shm", "-wal"]
    assert f"moved {journal} to {aside[0]}" in done.stdout
    assert verify_journal(aside[0]).last_seq == 3  # the old journal, whole, with its -wal
    assert verify_journal(journal).last_seq == 0

    daemon.start()
    try:  # never seq 1 again: the seq mark remembers 3, a journal_gap entry takes seq 4
        assert await commit(daemon.socket, 1) == [5]
    finally:
        assert daemon.terminate() == 0
    (lost,) = verify_journal(journal).lost
    assert (lost.first, lost.last, lost.gap_seq) == (1, 3, 4)


async def test_a_backup_beside_a_committing_daemon_holds_every_earlier_sale(
    tmp_path: Path,
) -> None:
    daemon = DaemonProcess(tmp_path / "till")
    old_umask = os.umask(0)  # the daemon inherits it; its files must still be 0640
    try:
        daemon.start()
    finally:
        os.umask(old_umask)
    try:
        await commit(daemon.socket, 50)
        seqs: list[int] = []
        stop = asyncio.Event()

        async def keep_committing() -> None:
            async with ApiClient(daemon.socket) as client:
                while not stop.is_set():
                    seqs.append((await client.call("sale.commit", {"sale": sale()}))["seq"])

        committer = asyncio.create_task(keep_committing(), name="committer")
        await until(lambda: len(seqs) >= 20, "20 commits beside the backup")
        committed_before = seqs[-1]
        copy = tmp_path / "backup" / "journal-copy.db"
        copy.parent.mkdir()
        backup = await asyncio.to_thread(
            run, EDGECTL, "journal", "backup", str(copy), "--config", str(daemon.config)
        )
        in_flight = len(seqs)
        stop.set()
        await committer
        assert backup.returncode == 0, backup.stdout + backup.stderr
        report = verify_journal(copy)
        assert report.last_seq >= committed_before and report.entries == report.last_seq
        assert f"{report.entries} entries" in backup.stdout and "chain intact" in backup.stdout
        assert len(seqs) >= in_flight and seqs == list(range(51, 51 + len(seqs)))
        assert stat.S_IMODE(copy.stat().st_mode) == 0o640
        for suffix in ("", "-wal", "-shm"):
            assert stat.S_IMODE(os.stat(f"{daemon.journal}{suffix}").st_mode) == 0o640, suffix
        again = run(EDGECTL, "journal", "backup", str(copy), "--config", str(daemon.config))
        assert again.returncode == 2 and "exists" in again.stderr
    finally:
        assert daemon.terminate() == 0
