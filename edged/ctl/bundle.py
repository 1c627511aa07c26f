"""`edgectl bundle`: one archive for support, with what support asks for first and no sale.

In it: the versions (edged, Python, OS), the config with every value not on an allow-list
hidden (edged.ctl.redact), modes and owners of the config, key and password files (never
their contents), `status` (the daemon's, or the journal's own figures when it does not run),
`doctor`'s checks, journal statistics and `verify`, device states, and the last log lines with
sale ids and long digit runs masked. Never a sale body: the journal is only counted.
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import io
import json
import os
import platform
import pwd
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edged import __version__, files
from edged.config import Config
from edged.ctl import doctor, paths, redact, rpc
from edged.ctl.errors import EXIT_OK, CtlError
from edged.errors import ChainError, JournalError
from edged.journal import readonly
from edged.journal.preflight import WalLostError
from edged.journal.verify import verify_journal

DEFAULT_LINES = 500
JOURNALCTL_TIMEOUT_S = 20.0
ABOUT = """\
edged support bundle, made by `edgectl bundle` ({made}).

version.json   edged, Python and OS versions
config.json    {config}: values not on edgectl's allow-list show "(hidden)"
files.json     mode, owner and size of the config, key, certificate and password files
               (never their contents)
status.json    the running daemon's status, or the journal's own figures if it did not answer
doctor.json    every `edgectl doctor` check (as `edgectl doctor --json`)
journal.json   journal statistics and the `edgectl journal verify` result
devices.json   device states from the daemon, with the printer's status
log.txt        the last {lines} log lines ({log}); sale ids and runs of 12+ digits masked

Not in it: any sale (body, lines, payments, ids), any card data, passwords, keys.
"""


def _stat(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError as exc:
        return {"path": path, "error": exc.strerror or str(exc)}
    return {
        "path": path,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "owner": _name(pwd.getpwuid, st.st_uid),
        "group": _name(grp.getgrgid, st.st_gid),
        "bytes": st.st_size,
    }


def _name(lookup: Any, ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def _config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {"error": "no config: none given and none at the default path"}
    try:
        raw = tomllib.loads(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {"path": path, "error": f"cannot read it: {exc}"}
    return {"path": path, "config": redact.config(raw)}


def _files(path: str | None, cfg: Config | None) -> list[dict[str, Any] | None]:
    named = [path]
    if cfg is not None and cfg.uplink is not None:
        up = cfg.uplink
        named += [up.ca_file, up.cert_file, up.key_file, up.password_file]
    return [_stat(p) for p in named if p]


def _journal(journal: str) -> dict[str, Any]:
    """Counts and the chain check; no entry's content."""
    stats: dict[str, Any] = {"path": journal}
    try:
        stats["file_bytes"] = readonly.file_bytes(journal)
        with readonly.JournalReader(journal) as reader:
            outbox = reader.outbox()
            last = reader.last_seq()
            oldest = reader.entry(outbox.acked_upto + 1) if last > outbox.acked_upto else None
        stats |= {
            "last_seq": last,
            "acked_upto": outbox.acked_upto,
            "pending": last - outbox.acked_upto,
            "oldest_pending_at": oldest.created_at if oldest else None,
            "last_ack_at": outbox.last_ack_at,
            "purged_upto": outbox.anchor_seq,
        }
    except (OSError, JournalError) as exc:
        stats["error"] = str(exc)
    try:
        stats["verify"] = {"ok": True, **asdict(verify_journal(journal))}
    except ChainError as exc:
        stats["verify"] = {
            "ok": False,
            "seq": exc.seq,
            "problem": exc.problem,
            "damaged": list(exc.damaged),
        }
    except (WalLostError, JournalError) as exc:
        stats["verify"] = {"ok": False, "problem": str(exc)}
    return stats


async def _daemon(sock: str, cfg: Config | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(status, devices) from the running daemon; each says why when it did not answer."""
    try:
        async with rpc.connect(sock) as client:
            status = await rpc.call(client, "status")
            devices: dict[str, Any] = {"devices": status.get("devices") or {}}
            if cfg is not None and cfg.devices.printer is not None:
                try:
                    devices["printer"] = await rpc.call(client, "printer.status")
                except CtlError as exc:
                    devices["printer"] = {"error": str(exc)}
    except CtlError as exc:
        unreachable = {"daemon": f"did not answer: {exc}"}
        return unreachable, unreachable
    return status, devices


def _log_lines(args: argparse.Namespace) -> tuple[str, list[str]]:
    """(where the lines come from, the last args.n lines): --log-file, else journalctl."""
    if args.log_file:
        try:
            with open(args.log_file, encoding="utf-8", errors="replace") as fh:
                return args.log_file, fh.read().splitlines()[-args.n :]
        except OSError as exc:
            return f"{args.log_file}: {exc.strerror or exc}", []
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        return "no journalctl here; pass --log-file FILE (where edged's stderr goes)", []
    command = [journalctl, "-u", "edged", "-o", "cat", "-n", str(args.n), "--no-pager"]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=JOURNALCTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"journalctl failed: {exc}", []
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit {done.returncode}"
        return f"journalctl -u edged: {why} (needs root or group systemd-journal/adm)", []
    return "journalctl -u edged", done.stdout.splitlines()


def _system() -> dict[str, Any]:
    try:
        os_release = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        os_release = None
    return {
        "edged": __version__,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "os": os_release,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "made_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _doctor_args(args: argparse.Namespace, config: str | None) -> argparse.Namespace:
    return argparse.Namespace(
        config=config,
        socket=args.socket,
        journal=args.journal,
        daemon_user=None,
        json=True,
    )


def _default_out(cfg: Config | None) -> str:
    who = f"{cfg.terminal.store_id}-{cfg.terminal.terminal_id}-" if cfg else ""
    return f"edged-bundle-{who}{datetime.now(UTC):%Y%m%dT%H%M%SZ}.tar.gz"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n"


def gather(args: argparse.Namespace) -> dict[str, str]:
    """The bundle's files, name -> text."""
    config_file = paths.config_file(args)
    cfg = paths.config(args) if config_file else None
    journal = paths.journal_path(args)
    status, devices = asyncio.run(_daemon(paths.socket_path(args), cfg))
    checks = asyncio.run(doctor.collect(_doctor_args(args, config_file)))
    where, lines = _log_lines(args)
    system = _system()
    return {
        "README.txt": ABOUT.format(
            made=system["made_at"], config=config_file or "no config", lines=args.n, log=where
        ),
        "version.json": _json(system),
        "config.json": _json(_config(config_file)),
        "files.json": _json(_files(config_file, cfg)),
        "status.json": _json(status),
        "doctor.json": _json(
            {
                "ok": not any(c.level == "FAIL" for c in checks),
                "checks": [c.as_dict() for c in checks],
            }
        ),
        "journal.json": _json(_journal(journal)),
        "devices.json": _json(devices),
        "log.txt": "".join(redact.log_line(line) + "\n" for line in lines),
    }


def write(out: Path, contents: dict[str, str]) -> None:
    """A tar.gz of `contents` under one folder named like the archive, created 0640."""
    folder = out.name.removesuffix(".tar.gz")
    try:
        fd = files.create_new(out)
    except FileExistsError:
        raise CtlError(f"{out} exists; pass another --out FILE") from None
    except OSError as exc:
        raise CtlError(f"cannot write {out}: {exc.strerror or exc}") from None
    now = time.time()
    with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
        for name, text in contents.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o640, now
            tar.addfile(info, io.BytesIO(data))


def run(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise CtlError("-n must be 0 or more")
    cfg = paths.config(args)
    out = Path(args.out or _default_out(cfg))
    contents = gather(args)
    write(out, contents)
    if args.json:
        print(json.dumps({"out": str(out), "files": sorted(contents)}))
    else:
        print(f"wrote {out} ({out.stat().st_size} bytes): {', '.join(contents)}")
        print("send it to support as it is; it holds no sale and no password")
    return EXIT_OK
