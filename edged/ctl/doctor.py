"""`edgectl doctor`: every check a technician would do by hand, one line each, worst first fixed.

Checks: config, daemon socket, journal (read-only, whole chain), device nodes as the daemon's
user, broker (TCP, TLS, MQTT CONNECT), the daemon's link against that broker, the age of the
oldest unsent sale, disk space, clock. Exit 1 if any FAILs; WARNs are worth reading but do
not fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from edged import localtime
from edged.backlog import Thresholds
from edged.clock import utc_iso
from edged.config import DEFAULT_CONFIG_PATH, Config, load_config
from edged.ctl import output, paths, rpc
from edged.ctl.broker import broker_checks
from edged.ctl.checks import Check
from edged.ctl.errors import EXIT_OK, EXIT_PROBLEM, JOIN_EDGED, CtlError, NoPermissionError
from edged.ctl.forwarding import link_check, outbox_check
from edged.ctl.keys import key_check
from edged.ctl.nodes import device_checks
from edged.ctl.secretfiles import closed_to_me, secret_file_checks
from edged.errors import ChainError, ConfigError, JournalError
from edged.journal import readonly
from edged.journal.preflight import WalLostError
from edged.journal.verify import VerifyReport, verify_journal

DISK_FAIL_BYTES = 50_000_000
DISK_WARN_BYTES = 500_000_000
DISK_WARN_SHARE = 0.10
TIMEDATECTL_TIMEOUT_S = 5.0
DAMAGED_LISTED = 20  # damaged seqs named on the journal line
STORE_CLOCK_WARN_S = 5  # this far from the store's clock: WARN (FAIL past CLOCK_SLACK_S)
LOST_LISTED = 3  # declared gaps named on the journal line, the most recent ones


def _backlog(cfg: Config | None) -> Thresholds | None:
    """The outbox thresholds of the config's `[uplink]`; None without one (or without config)."""
    if cfg is None or cfg.uplink is None:
        return None
    return Thresholds(cfg.uplink.outbox_warn_after_s, cfg.uplink.outbox_alarm_after_s)


def _config(path: str) -> tuple[Config | None, Check]:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        todo = "fix it; edged refuses to start with it (exit 78)"
        if closed_to_me(path):
            todo = JOIN_EDGED
        elif not os.path.exists(path):
            todo = "pass --config FILE, or install the config there"
        return None, Check("config", "FAIL", str(exc), todo)
    devices = cfg.devices
    configured = [
        f"{name} ({section.driver})"
        for name, section in (
            ("printer", devices.printer),
            ("scanner", devices.scanner),
            ("payment", devices.payment),
        )
        if section is not None
    ]
    uplink = f"uplink {cfg.uplink.host}:{cfg.uplink.effective_port}" if cfg.uplink else "no uplink"
    found = (
        f"{path}: store {cfg.terminal.store_id} terminal {cfg.terminal.terminal_id}, {uplink}, "
        f"devices: {', '.join(configured) or 'none'}"
    )
    return cfg, Check("config", "OK", found)


async def _socket(path: str) -> tuple[dict[str, Any] | None, Check]:
    try:
        async with rpc.connect(path) as client:
            status = await rpc.call(client, "status")
    except NoPermissionError:  # the daemon may well run: this user may not ask it
        return None, Check("socket", "FAIL", f"no permission to use {path}", JOIN_EDGED)
    except CtlError as exc:
        return None, Check(
            "socket", "FAIL", str(exc), "systemctl start edged; `edgectl logs` says why it stopped"
        )
    link, pending = status["link"]["state"], status["outbox"]["pending"]
    found = f"edged {status.get('version', '?')} answers on {path}: link {link}, {pending} pending"
    return status, Check("socket", "OK", found)


def _journal(path: str, status: dict[str, Any] | None) -> Check:
    try:
        report = verify_journal(path)
    except ChainError as exc:
        if exc.damaged:
            return _damaged(path, exc)
        return Check(
            "journal",
            "FAIL",
            f"{path}: BROKEN at seq {exc.seq}: {exc.problem}",
            "keep the file for analysis and call support (`edgectl journal export`)",
        )
    except WalLostError as exc:
        return Check("journal", "FAIL", str(exc), "restore the -wal or a backup, as it says")
    except JournalError as exc:
        todo = JOIN_EDGED
        if not closed_to_me(path) and not os.path.exists(path):
            todo = "edged creates it at its first start: is journal.path right?"
        return Check("journal", "FAIL", str(exc), todo)
    size = output.size(readonly.file_bytes(path))
    found = (
        f"{path} ({size}): {report.entries} entries, seq {report.first_seq}..{report.last_seq}, "
        "chain intact"
    )
    if report.lost:
        return _lost(found, report)
    used = (status or {}).get("journal", {}).get("path")
    if used is not None and Path(used).resolve() != Path(path).resolve():
        return Check(
            "journal",
            "WARN",
            f"{found}; but the running edged writes {used}",
            "is edged running with another config? `systemctl cat edged`",
        )
    return Check("journal", "OK", found)


def _lost(found: str, report: VerifyReport) -> Check:
    """Seqs the journal lost: FAIL until the store has the journal_gap entry declaring them."""
    said = "; ".join(lost.describe() for lost in report.lost[-LOST_LISTED:])
    more = len(report.lost) - LOST_LISTED
    if more > 0:
        said = f"{more} earlier gaps and: {said}"
    pending = [
        lost for lost in report.lost if lost.gap_seq is None or lost.gap_seq > report.acked_upto
    ]
    todo = (
        "edged continues after them and tells the store (a journal_gap entry); if the sales "
        "matter, look for them in a copy made by `edgectl journal backup` and give that copy "
        "to support; keep this file"
    )
    return Check("journal", "FAIL" if pending else "WARN", f"{found}; {said}", todo)


def _damaged(path: str, exc: ChainError) -> Check:
    """Damaged entries: the daemon sends each to the store flagged; the sale needs a backup."""
    count = len(exc.damaged)
    seqs = ", ".join(map(str, exc.damaged[:DAMAGED_LISTED]))
    more = f" and {count - DAMAGED_LISTED} more" if count > DAMAGED_LISTED else ""
    return Check(
        "journal",
        "FAIL",
        f"{path}: {count} damaged entr{'y' if count == 1 else 'ies'} (seq {seqs}{more}): "
        f"seq {exc.seq}: {exc.problem}",
        "edged sends a damaged entry to the store flagged as damaged and goes on; to recover "
        "its sale, restore it from a copy made by `edgectl journal backup`; keep this file "
        "for analysis",
    )


def _disk(journal: str) -> Check:
    where = Path(journal).parent
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        todo = JOIN_EDGED if isinstance(exc, PermissionError) else "is journal.path right?"
        return Check("disk", "FAIL", f"cannot check {where}: {exc.strerror}", todo)
    share = usage.free / usage.total if usage.total else 0.0
    found = (
        f"{output.size(usage.free)} free of {output.size(usage.total)} ({share:.0%}) "
        f"where the journal is ({where})"
    )
    if usage.free < DISK_FAIL_BYTES:
        return Check(
            "disk", "FAIL", found, "free space now: sales fail to commit when the disk is full"
        )
    if usage.free < DISK_WARN_BYTES or share < DISK_WARN_SHARE:
        return Check("disk", "WARN", found, "free some space (old logs, packages) soon")
    return Check("disk", "OK", found)


def _ntp() -> str | None:
    """systemd's view of time sync: "yes", "no", or None when it cannot be asked."""
    timedatectl = shutil.which("timedatectl")
    if timedatectl is None:
        return None
    try:
        done = subprocess.run(
            [timedatectl, "show", "--property=NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=TIMEDATECTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = done.stdout.strip()
    return answer if done.returncode == 0 and answer in ("yes", "no") else None


def _latest_stamp(journal: str) -> tuple[str, str] | None:
    """The latest time known to have passed, from the journal: (what, RFC 3339 time)."""
    try:
        with readonly.JournalReader(journal) as reader:
            newest = reader.newest()
            outbox = reader.outbox()
    except JournalError:
        return None
    stamps = []
    if newest is not None and newest.damage is None:
        stamps.append((f"the newest sale (seq {newest.seq})", newest.created_at))
    if outbox.last_ack_at:
        stamps.append(("the last ack", outbox.last_ack_at))
    if outbox.last_ack_store_at:
        stamps.append(("the store's clock at the last ack", outbox.last_ack_store_at))
    return max(stamps, key=lambda s: output.parse_time(s[1])) if stamps else None


def _store_clock(now: str, status: dict[str, Any] | None) -> Check | None:
    """The running edged's clock against the store's (each ack carries the store's time)."""
    clock = (status or {}).get("clock", {})
    offset = clock.get("offset_s")
    if offset is None:
        return None
    off = abs(float(offset))
    way = "ahead of" if offset > 0 else "behind"
    said = f"{output.duration(int(off))} {way} the store's clock (as of its last ack)"
    if off > output.CLOCK_SLACK_S:
        return Check(
            "clock",
            "FAIL",
            f"now {now} is {said}",
            "fix the time (timedatectl; the store's NTP server); seq keeps sales in order, but "
            "their times are wrong until then",
        )
    if off > STORE_CLOCK_WARN_S:
        return Check(
            "clock", "WARN", f"{said}", "check time sync here and on the store server (NTP)"
        )
    return None


def _clock(journal: str, status: dict[str, Any] | None, where: tzinfo) -> Check:
    """Against the store's clock (from the running edged's acks) and the latest stamps; the
    times shown in the store's zone `where`, as the receipts print them."""
    now = datetime.now(UTC)
    shown = output.when(utc_iso(now.timestamp()), where)
    bad = _store_clock(shown, status)
    if bad is not None:
        return bad
    notes = [f"now {shown}"]
    offset = (status or {}).get("clock", {}).get("offset_s")
    if offset is not None:
        notes.append(f"within {STORE_CLOCK_WARN_S} s of the store's clock ({offset:+.1f} s)")
    latest = _latest_stamp(journal)
    if latest is not None:
        what, stamp = latest
        ahead = int((output.parse_time(stamp) - now).total_seconds())
        if ahead > output.CLOCK_SLACK_S:
            return Check(
                "clock",
                "FAIL",
                f"now is {shown}, but {what} was stamped {output.when(stamp, where)}: "
                f"the clock went back by {output.duration(ahead)}",
                "fix the time (timedatectl; the store's NTP server); seq keeps sales in order, "
                "but their times run backwards until then",
            )
        notes.append(f"not behind {what} at {output.when(stamp, where)}")
    ntp = _ntp()
    notes.append(
        "NTP synchronized" if ntp == "yes" else "NOT synchronized (NTP)" if ntp else "NTP unknown"
    )
    if offset is None:
        notes.append("the store's clock was not compared (edged has no ack on this run yet)")
    found = "; ".join(notes)
    if ntp == "no":
        return Check(
            "clock",
            "WARN",
            found,
            "enable time sync (`timedatectl set-ntp true`) and check the NTP server is reachable",
        )
    return Check("clock", "OK", found)


async def _run(args: argparse.Namespace, report: Callable[[Check], None]) -> None:
    cfg, check = _config(args.config or DEFAULT_CONFIG_PATH)
    report(check)
    sock = args.socket or (cfg.api.socket if cfg else paths.default_socket())
    journal = args.journal or (cfg.journal.path if cfg else paths.default_journal())
    where = localtime.zone(cfg.terminal.timezone if cfg else "")
    status, check = await _socket(sock)
    report(check)
    report(_journal(journal, status))
    broker_answers = False
    if cfg is not None:
        for check in device_checks(cfg, status, args.daemon_user):
            report(check)
        for check in secret_file_checks(cfg, args.daemon_user):
            report(check)
        broker = await broker_checks(cfg)
        for check in broker:
            report(check)
        broker_answers = any(c.name == "broker mqtt" and c.level == "OK" for c in broker)
    for found in (
        await link_check(sock, status, broker_answers, where),
        outbox_check(status, journal, _backlog(cfg), where),
    ):
        if found is not None:
            report(found)
    report(key_check(journal, status))
    report(_disk(journal))
    report(_clock(journal, status, where))


async def collect(args: argparse.Namespace) -> list[Check]:
    """Every check, quietly (edgectl bundle): args as doctor's (config, socket, journal,
    daemon_user)."""
    checks: list[Check] = []
    await _run(args, checks.append)
    return checks


def run(args: argparse.Namespace) -> int:
    checks: list[Check] = []

    def report(check: Check) -> None:
        checks.append(check)
        if not args.json:
            print(check.line(), flush=True)

    asyncio.run(_run(args, report))
    failed = [c for c in checks if c.level == "FAIL"]
    if args.json:
        output.emit_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    elif failed:
        print(f"{len(failed)} check(s) failed: {', '.join(c.name for c in failed)}")
    else:
        warnings = sum(c.level == "WARN" for c in checks)
        print(f"no check failed ({warnings} warning{'' if warnings == 1 else 's'})")
    return EXIT_PROBLEM if failed else EXIT_OK
