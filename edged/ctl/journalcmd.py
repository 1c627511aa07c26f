"""`edgectl journal verify|tail|export`: the journal file itself, daemon running or not."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import msgspec

from edged.ctl import output, paths
from edged.ctl.errors import EXIT_OK, EXIT_PROBLEM, CtlError
from edged.errors import ChainError, JournalError
from edged.journal import StoredEntry
from edged.journal.readonly import JournalReader
from edged.journal.verify import verify_journal


def _reader(args: argparse.Namespace) -> JournalReader:
    return JournalReader(paths.journal_path(args))


def verify(args: argparse.Namespace) -> int:
    journal = paths.journal_path(args)
    try:
        report = verify_journal(journal)
    except ChainError as exc:
        if args.json:
            output.emit_json({"ok": False, "path": journal, "seq": exc.seq, "problem": exc.problem})
        else:
            print(f"journal {journal}: BROKEN at seq {exc.seq}: {exc.problem}")
        return EXIT_PROBLEM
    except JournalError as exc:
        raise CtlError(f"cannot verify: {exc}") from None
    if args.json:
        output.emit_json({"ok": True, **asdict(report)})
        return EXIT_OK
    purged = f" (seq 1..{report.anchor_seq} purged after ack)" if report.anchor_seq else ""
    print(
        f"journal {report.path}: OK — store {report.store_id} terminal {report.terminal_id}, "
        f"{report.entries} entries, seq {report.first_seq}..{report.last_seq}, chain intact"
        + purged
    )
    return EXIT_OK


def summary(entry: StoredEntry, acked_upto: int) -> dict[str, Any]:
    """One entry for tables and JSON lists: no hashes or sale body, but its total."""
    sale = msgspec.json.decode(entry.sale_json)
    return {
        "seq": entry.seq,
        "receipt_no": entry.receipt_no,
        "created_at": entry.created_at,
        "total": sale["total"],
        "currency": sale["currency"],
        "lines": len(sale["lines"]),
        "acked": entry.seq <= acked_upto,
        "hash": entry.hash.hex(),
    }


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
    cells = [
        [
            str(r["seq"]),
            r["receipt_no"],
            r["created_at"],
            output.money(r["total"], r["currency"]),
            str(r["lines"]),
            "acked" if r["acked"] else "pending",
            r["hash"][:16],
        ]
        for r in rows
    ]
    headers = ("seq", "receipt", "created_at", "total", "lines", "state", "hash")
    print(output.table(headers, cells, right=frozenset({0, 3, 4})))
    return EXIT_OK


class _ExportLine(msgspec.Struct, frozen=True):
    """An entry as forwarded on the wire (edged.wire.Entry), plus whether it is acked.

    The sale is its stored canonical JSON, byte for byte, so the hash can be recomputed.
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
        with Path(out).open("wb") as fh:
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
                        sale=msgspec.Raw(entry.sale_json),
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
