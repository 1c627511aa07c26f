"""`edgectl`: the field technician's view of a terminal, over the local API and the journal file."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edged import __version__
from edged.config import DEFAULT_CONFIG_PATH, Config, load_config
from edged.errors import ChainError, ConfigError, JournalError
from edged.journal.verify import verify_journal

SOCKET_TIMEOUT_S = 10.0
EX_CANNOT_CHECK = 2
EX_UNAVAILABLE = 69
EX_CONFIG = 78


class CtlError(Exception):
    """A problem edgectl reports in one line and an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _config(args: argparse.Namespace) -> Config | None:
    path = args.config or (DEFAULT_CONFIG_PATH if os.path.exists(DEFAULT_CONFIG_PATH) else None)
    if path is None:
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CtlError(f"config error: {exc}", EX_CONFIG) from None


def socket_path(args: argparse.Namespace) -> str:
    """--socket, else the config's [api] socket, else the contract's default."""
    if args.socket:
        return str(args.socket)
    cfg = _config(args)
    runtime = os.environ.get("RUNTIME_DIRECTORY", "/run/edged")
    return cfg.api.socket if cfg else f"{runtime}/edged.sock"


def journal_path(args: argparse.Namespace) -> str:
    """--journal, else the config's [journal] path, else the contract's default."""
    if args.journal:
        return str(args.journal)
    cfg = _config(args)
    state = os.environ.get("STATE_DIRECTORY", "/var/lib/edged")
    return cfg.journal.path if cfg else f"{state}/journal.db"


def call(sock_path: str, method: str, params: dict[str, Any] | None = None) -> Any:
    """One JSON-RPC call over the daemon's socket."""
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(SOCKET_TIMEOUT_S)
            s.connect(sock_path)
            s.sendall(json.dumps(request).encode() + b"\n")
            with s.makefile("rb") as reader:
                line = reader.readline()
    except FileNotFoundError:
        raise CtlError(
            f"no daemon socket at {sock_path}: is edged running? (systemctl status edged)",
            EX_UNAVAILABLE,
        ) from None
    except PermissionError:
        raise CtlError(
            f"no permission to use {sock_path}: run as root or a member of the edged group",
            EX_UNAVAILABLE,
        ) from None
    except OSError as exc:
        raise CtlError(f"cannot talk to edged at {sock_path}: {exc}", EX_UNAVAILABLE) from None
    if not line:
        raise CtlError(f"edged at {sock_path} closed the connection without answering")
    reply = json.loads(line)
    if "error" in reply:
        error = reply["error"]
        raise CtlError(f"edged answered error {error.get('code')}: {error.get('message')}")
    return reply["result"]


# ISO 4217 currencies whose minor unit is not 1/100 (display only; amounts stay integers).
_EXPONENT = {
    c: 0
    for c in (
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    )
}
_EXPONENT |= {c: 3 for c in ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")}


def format_money(minor: int, currency: str) -> str:
    """12345 EUR -> "123.45 EUR", for people; integer arithmetic only."""
    exponent = _EXPONENT.get(currency, 2)
    if exponent == 0:
        return f"{minor} {currency}"
    sign, value = ("-" if minor < 0 else ""), abs(minor)
    whole, frac = divmod(value, 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d} {currency}"


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((datetime.now(UTC) - then).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def render_status(status: dict[str, Any]) -> str:
    """The human table a technician reads at the till."""
    link, outbox, terminal = status["link"], status["outbox"], status["terminal"]
    oldest = outbox["oldest_created_at"]
    rows = [
        ("terminal", f"{terminal['store_id']} / {terminal['terminal_id']}"),
        ("version", status.get("version", "?")),
        ("link", f"{link['state']} since {link.get('since') or '-'}"),
    ]
    if link.get("peer"):
        rows.append(("broker", link["peer"]))
    if link.get("error"):
        rows.append(("last error", link["error"]))
    rows += [
        ("pending", str(outbox["pending"])),
        ("oldest pending", f"{oldest or '-'} ({_age(oldest)})"),
        ("acked up to", f"seq {outbox.get('acked_upto', '-')}"),
        ("last ack", f"{outbox.get('last_ack_at') or '-'} ({_age(outbox.get('last_ack_at'))})"),
        ("last seq", str(status["journal"]["last_seq"])),
    ]
    devices = status.get("devices") or {}
    if not devices:
        rows.append(("devices", "none configured"))
    for name, device in sorted(devices.items()):
        detail = f"{device.get('state')} {device.get('detail') or ''}".strip()
        rows.append((f"device {name}", detail))
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def cmd_status(args: argparse.Namespace) -> int:
    sock = socket_path(args)
    status = call(sock, "status")
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    sock = socket_path(args)
    result = call(sock, "sync.now")
    text = f"link {result['link']}, {result['pending']} pending"
    print(json.dumps(result) if args.json else text)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    journal = journal_path(args)
    try:
        report = verify_journal(journal)
    except ChainError as exc:
        print(f"journal {journal}: BROKEN at seq {exc.seq}: {exc.problem}")
        return 1
    except JournalError as exc:
        raise CtlError(f"cannot verify: {exc}", EX_CANNOT_CHECK) from None
    purged = f" (seq 1..{report.anchor_seq} purged after ack)" if report.anchor_seq else ""
    print(
        f"journal {report.path}: OK — store {report.store_id} terminal {report.terminal_id}, "
        f"{report.entries} entries, seq {report.first_seq}..{report.last_seq}, chain intact"
        + purged
    )
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    journal = journal_path(args)
    path = Path(journal)
    if not path.exists():
        raise CtlError(f"journal {journal}: no such file")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            (acked,) = conn.execute("SELECT acked_upto FROM outbox").fetchone()
            rows = conn.execute(
                "SELECT seq, receipt_no, created_at, sale, hash FROM entries "
                "ORDER BY seq DESC LIMIT ?",
                (args.n,),
            ).fetchall()
    except sqlite3.Error as exc:
        raise CtlError(f"journal {journal}: cannot read: {exc}") from None
    for seq, receipt_no, created_at, sale_text, digest in reversed(rows):
        sale = json.loads(sale_text)
        total = format_money(sale["total"], sale["currency"])
        mark = "acked" if seq <= acked else "pending"
        count = len(sale["lines"])
        lines = f"{count:>3} line{'s' if count != 1 else ' '}"
        print(
            f"{seq:>8}  {receipt_no}  {created_at}  {total:>14}  {lines}  {mark:<7}  "
            f"{bytes(digest).hex()[:16]}…"
        )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgectl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edgectl {__version__}")
    parser.add_argument("--config", help=f"edged config (default {DEFAULT_CONFIG_PATH} if present)")
    sub = parser.add_subparsers(dest="command", required=True)

    status = sub.add_parser("status", help="link, outbox and devices of the running daemon")
    status.add_argument("--socket", help="daemon socket (default from the config)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    sync = sub.add_parser("sync", help="try the link now and flush the outbox")
    sync.add_argument("--socket", help="daemon socket (default from the config)")
    sync.add_argument("--json", action="store_true", help="machine-readable output")
    sync.set_defaults(func=cmd_sync)

    journal = sub.add_parser("journal", help="read the journal file (daemon running or not)")
    jsub = journal.add_subparsers(dest="journal_command", required=True)
    verify = jsub.add_parser("verify", help="check seq continuity and the whole hash chain")
    verify.add_argument("--journal", help="journal file (default from the config)")
    verify.set_defaults(func=cmd_verify)
    tail = jsub.add_parser("tail", help="show the last entries")
    tail.add_argument("--journal", help="journal file (default from the config)")
    tail.add_argument("-n", type=int, default=10, help="how many entries (default 10)")
    tail.set_defaults(func=cmd_tail)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CtlError as exc:
        print(f"edgectl: {exc}", file=sys.stderr)
        return exc.status
