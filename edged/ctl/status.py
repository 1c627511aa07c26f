"""`edgectl status`: what the running daemon says about link, backlog, devices and journal."""

from __future__ import annotations

import argparse
from datetime import tzinfo
from typing import Any

from edged.ctl import output, paths, rpc
from edged.ctl.errors import EXIT_OK
from edged.journal import readonly


def _with_file_size(status: dict[str, Any]) -> dict[str, Any]:
    """Add journal.file_bytes (database + WAL), read here: the API does not report it."""
    journal = status["journal"]
    try:
        size: int | None = readonly.file_bytes(journal["path"])
    except OSError:
        size = None  # not visible to this user, or another mount namespace
    return {**status, "journal": {**journal, "file_bytes": size}}


def _when(timestamp: str | None, where: tzinfo | None) -> str:
    return output.when(timestamp, where) if timestamp else "-"


def _severity(outbox: dict[str, Any]) -> str:
    """The backlog's banner, spelled out when it is not `ok`."""
    severity = outbox.get("severity")
    return f": {severity.upper()}" if severity in ("warn", "alarm") else ""


def render(status: dict[str, Any], where: tzinfo | None = None) -> str:
    """The table a technician reads at the till, its times in the store's zone `where`."""
    link, outbox, journal = status["link"], status["outbox"], status["journal"]
    terminal = status["terminal"]
    rows = [
        ("terminal", f"{terminal['store_id']} / {terminal['terminal_id']}"),
        ("key", terminal.get("key") or "-"),
        ("collector-key", terminal.get("collector_key") or "not pinned yet"),
        ("version", status.get("version", "?")),
        ("link", f"{link['state']} since {_when(link.get('since'), where)}"),
    ]
    if link.get("peer"):
        rows.append(("broker", link["peer"]))
    if link.get("error"):
        rows.append(("last error", link["error"]))
    oldest = outbox["oldest_created_at"]
    rows += [
        ("pending", str(outbox["pending"])),
        ("oldest pending", output.ago(oldest, where) + _severity(outbox)),
        ("acked up to", f"seq {outbox.get('acked_upto', '-')}"),
        ("last ack", output.ago(outbox.get("last_ack_at"), where)),
        ("last seq", str(journal["last_seq"])),
    ]
    if gap := link.get("store_permanent_gap"):
        rows.append(("store gap", f"seqs {gap[0]}..{gap[1]} purged here: the store must accept"))
    if resend := link.get("resend"):
        rows.append(("resending", f"seq {resend['from']}..{resend['upto']} for the store"))
    size = journal.get("file_bytes")
    shown = output.size(size) if size is not None else "size not readable"
    rows.append(("journal", f"{journal.get('path', '?')} ({shown})"))
    if count := journal.get("damaged_count"):
        listed = journal["damaged"]
        seqs = ", ".join(map(str, listed)) + (" ..." if count > len(listed) else "")
        entries = f"{count} entr{'y' if count == 1 else 'ies'}"
        rows.append(("damaged", f"{entries}, seq {seqs}: sent to the store flagged (doctor)"))
    offline = (status.get("payments") or {}).get("offline_approved")
    if offline is not None:
        total = output.money(offline["total"], offline["currency"])
        since = _when(offline["since"], where)
        rows.append(
            ("card offline", f"{offline['count']} approved offline, {total}, since {since}")
        )
    devices = status.get("devices") or {}
    if not devices:
        rows.append(("devices", "none configured"))
    for name, device in sorted(devices.items()):
        detail = device.get("detail") or ""
        rows.append((f"device {name}", f"{device['state']}{': ' + detail if detail else ''}"))
    return output.pairs(rows)


def run(args: argparse.Namespace) -> int:
    status = _with_file_size(rpc.request(paths.socket_path(args), "status"))
    if args.json:
        output.emit_json(status)
    else:
        print(render(status, paths.zone(args)))
    return EXIT_OK
