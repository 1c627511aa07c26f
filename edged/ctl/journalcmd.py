"""`edgectl journal verify|tail|export|backup|init`: the journal file itself.

All but `init` read it, daemon running or not; `init` replaces it, with the daemon stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import msgspec

from edged import files
from edged.ctl import output, paths
from edged.ctl.errors import EXIT_OK, EXIT_PROBLEM, CtlError
from edged.errors import ChainError, JournalError
from edged.journal import StoredEntry
from edged.journal.backup import backup_journal
from edged.journal.create import SIDE_FILES, create_journal, set_aside
from edged.journal.preflight import WalLostError
from edged.journal.readonly import JournalReader
from edged.journal.seqmark import mark_path, read_mark
from edged.journal.verify import verify_journal

PROBE_TIMEOUT_S = 2.0


def _reader(args: argparse.Namespace) -> JournalReader:
    return JournalReader(paths.journal_path(args))


def verify(args: argparse.Namespace) -> int:
    journal = paths.journal_path(args)
    try:
        report = verify_journal(journal)
    except ChainError as exc:
        if args.json:
            output.emit_json(
                {
                    "ok": False,
                    "path": journal,
                    "seq": exc.seq,
                    "problem": exc.problem,
                    "damaged": list(exc.damaged),
                }
            )
        else:
            print(f"journal {journal}: BROKEN at seq {exc.seq}: {exc.problem}")
        return EXIT_PROBLEM
    except WalLostError as exc:
        if args.json:
            output.emit_json({"ok": False, "path": journal, "seq": None, "problem": str(exc)})
        else:
            print(f"BROKEN: {exc}")
        return EXIT_PROBLEM
    except JournalError as exc:
        raise CtlError(f"cannot verify: {exc}") from None
    if args.json:
        output.emit_json({"ok": not report.lost, **asdict(report)})
        return EXIT_PROBLEM if report.lost else EXIT_OK
    purged = f" (seq 1..{report.anchor_seq} purged after ack)" if report.anchor_seq else ""
    if report.adopted is not None:
        purged += (
            f" (adopted: seqs 1..{report.adopted.last} are the store's, from the till this "
            "journal replaced)"
        )
    print(
        f"journal {report.path}: {'LOST SALES' if report.lost else 'OK'} — store "
        f"{report.store_id} terminal {report.terminal_id}, {report.entries} entries, "
        f"seq {report.first_seq}..{report.last_seq}, chain intact" + purged
    )
    for lost in report.lost:
        print(f"  {lost.describe()}")
    return EXIT_PROBLEM if report.lost else EXIT_OK


def summary(entry: StoredEntry, acked_upto: int) -> dict[str, Any]:
    """One entry for tables and JSON lists: no hashes or sale body, but its total; a damaged
    entry has no total (None) and says its `damage`."""
    sale = msgspec.json.decode(entry.sale_json) if entry.damage is None else {}
    return {
        "seq": entry.seq,
        "receipt_no": entry.receipt_no,
        "created_at": entry.created_at,
        "total": sale.get("total"),
        "currency": sale.get("currency"),
        "lines": len(sale.get("lines", ())),
        "acked": entry.seq <= acked_upto,
        "hash": entry.hash.hex(),
        "damage": entry.damage,
    }


def total_cell(row: dict[str, Any]) -> str:
    """The total column of a summary row: the money, or DAMAGED."""
    if row["damage"] is not None:
        return "DAMAGED (run verify)"
    if row["total"] is None:
        return "-"
    return output.money(row["total"], row["currency"])


def tail(args: argparse.Namespace) -> int:
    try:
        with _reader(args) as journal:
            acked = journal.outbox().acked_upto
            last = journal.last_seq()
            rows = [summary(e, acked) for e in journal.entries(max(1, last - args.n + 1), last)]
    except JournalError as exc:
        raise CtlError(str(exc)) from None
    if args.json:
        output.emit_json(rows)
        return EXIT_OK
    where = paths.zone(args)  # the --json rows above stay UTC, for programs
    cells = [
        [
            str(r["seq"]),
            r["receipt_no"],
            output.when(r["created_at"], where),
            total_cell(r),
            str(r["lines"]),
            "acked" if r["acked"] else "pending",
            r["hash"][:16],
        ]
        for r in rows
    ]
    headers = ("seq", "receipt", "time", "total", "lines", "state", "hash")
    print(output.table(headers, cells, right=frozenset({0, 3, 4})))
    return EXIT_OK


class _ExportLine(msgspec.Struct, frozen=True):
    """An entry as forwarded on the wire (edged.wire.Entry), plus whether it is acked.

    The sale is its stored canonical JSON, byte for byte, so the hash can be recomputed; a
    damaged row's is a `damaged_entry` record of its stored bytes, as the forwarder sends it.
    """

    seq: int
    id: str
    receipt_no: str
    created_at: str
    prev_hash: str
    hash: str
    sale: msgspec.Raw
    acked: bool


@contextlib.contextmanager
def _sink(out: str | None) -> Iterator[IO[bytes]]:
    if out is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        with files.open_for_writing(Path(out)) as fh:
            yield fh
    except OSError as exc:
        raise CtlError(f"cannot write {out}: {exc.strerror or exc}") from None


def export(args: argparse.Namespace) -> int:
    encoder = msgspec.json.Encoder()
    try:
        with _reader(args) as journal:
            outbox = journal.outbox()
            first = args.from_seq if args.from_seq is not None else outbox.anchor_seq + 1
            last = args.to_seq if args.to_seq is not None else journal.last_seq()
            if first > last:
                raise CtlError(f"--from {first} is after --to {last}: nothing to export")
            count = 0
            with _sink(args.out) as sink:
                for entry in journal.entries(first, last):
                    line = _ExportLine(
                        seq=entry.seq,
                        id=entry.id,
                        receipt_no=entry.receipt_no,
                        created_at=entry.created_at,
                        prev_hash=entry.prev_hash.hex(),
                        hash=entry.hash.hex(),
                        sale=msgspec.Raw(entry.wire_sale()),
                        acked=entry.seq <= outbox.acked_upto,
                    )
                    sink.write(encoder.encode(line) + b"\n")
                    count += 1
            stored_last = journal.last_seq()
    except JournalError as exc:
        raise CtlError(str(exc)) from None
    missing = _missing(first, last, count, outbox.anchor_seq, stored_last)
    result = {"entries": count, "from": first, "to": last, "out": args.out, "missing": missing}
    if args.out is not None:
        if args.json:
            output.emit_json(result)
        else:
            print(f"exported {count} entries (seq {first}..{last}) to {args.out}")
    if missing:
        output.warn(f"not exported: {missing}")
        return EXIT_PROBLEM
    return EXIT_OK


def _missing(first: int, last: int, count: int, anchor: int, stored_last: int) -> str:
    """Why part of the range has no entries: purged after ack, or not written yet."""
    problems = []
    if first <= anchor:
        problems.append(f"seq {first}..{min(anchor, last)} purged after the store's ack")
    if last > stored_last:
        problems.append(f"seq {max(first, stored_last + 1)}..{last} do not exist yet")
    expected = max(0, min(last, stored_last) - max(first, anchor + 1) + 1)
    if count != expected:
        problems.append(f"{expected - count} entries absent inside the range (run verify)")
    return "; ".join(problems)


def backup(args: argparse.Namespace) -> int:
    """A consistent, verified copy of the journal in FILE (0640), daemon running or not."""
    journal = paths.journal_path(args)
    try:
        report = backup_journal(Path(journal), Path(args.file), replace=args.force)
    except ChainError as exc:
        raise CtlError(
            f"copied {journal} to {args.file}, but its chain is BROKEN at seq {exc.seq}: "
            f"{exc.problem}; keep both files for analysis",
            EXIT_PROBLEM,
        ) from None
    except WalLostError as exc:
        raise CtlError(f"no copy made: {exc}", EXIT_PROBLEM) from None
    except JournalError as exc:
        raise CtlError(f"no copy made: {exc}") from None
    if args.json:
        output.emit_json({"ok": True, "file": args.file, **asdict(report)})
    else:
        print(
            f"copied {journal} to {args.file}: {report.entries} entries, "
            f"seq {report.first_seq}..{report.last_seq}, chain intact"
        )
    return EXIT_OK


def init(args: argparse.Namespace) -> int:
    """Create the configured journal; with --force, set an existing one aside first."""
    cfg = paths.config(args)
    if cfg is None:
        raise CtlError("journal init needs the terminal's config ([terminal] ids): --config FILE")
    journal = Path(paths.journal_path(args))
    present = [p for p in (journal, *(Path(f"{journal}{s}") for s in SIDE_FILES)) if p.exists()]
    if present and not args.force:
        raise CtlError(
            f"journal {journal}: {', '.join(p.name for p in present)} already there; edged never "
            "starts a new journal over one. To give it up (it is set aside, not deleted), "
            "add --force"
        )
    refuse_while_running(paths.socket_path(args))
    try:
        moved = set_aside(journal) if present else []
        for old, new in moved:
            print(f"moved {old} to {new}")
        create_journal(journal, cfg.terminal.store_id, cfg.terminal.terminal_id)
    except JournalError as exc:
        raise CtlError(str(exc)) from None
    mark = read_mark(journal)
    after = (
        f"edged continues after seq {mark.seq} (the seq mark {mark_path(journal).name}), with a "
        f"journal_gap entry declaring seqs 1..{mark.seq} not in this journal"
        if mark is not None and mark.seq > 0
        else "its first sale will be seq 1, or past the store's last seq for this terminal "
        "once edged reaches the store"
    )
    print(
        f"created journal {journal} for store {cfg.terminal.store_id} terminal "
        f"{cfg.terminal.terminal_id}; {after}"
    )
    return EXIT_OK


def refuse_while_running(socket_path: str) -> None:
    """A journal is replaced only with the daemon stopped: its API socket must not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            return
        except OSError as exc:
            raise CtlError(
                f"cannot tell whether edged is running ({socket_path}: {exc.strerror or exc}); "
                "stop it (systemctl stop edged) and run this as root"
            ) from None
    raise CtlError(
        f"edged is running (it answers on {socket_path}); stop it first: systemctl stop edged"
    )
