"""`edgectl outbox`: the sales not yet acknowledged by the store, oldest first, from the file."""

from __future__ import annotations

import argparse

from edged.ctl import output, paths
from edged.ctl.errors import EXIT_OK, CtlError
from edged.ctl.journalcmd import summary, total_cell
from edged.errors import JournalError
from edged.journal.readonly import JournalReader


def run(args: argparse.Namespace) -> int:
    try:
        with JournalReader(paths.journal_path(args)) as journal:
            acked = journal.outbox().acked_upto
            last = journal.last_seq()
            entries = [summary(e, acked) for e in journal.entries(acked + 1, last, args.limit)]
    except JournalError as exc:
        raise CtlError(str(exc)) from None
    pending = last - acked
    for entry in entries:
        entry["age_s"] = None if entry["damage"] else output.seconds_since(entry["created_at"])
    if args.json:
        output.emit_json({"pending": pending, "acked_upto": acked, "entries": entries})
        return EXIT_OK
    if not pending:
        print(f"outbox empty: every sale up to seq {last} is acknowledged by the store")
        return EXIT_OK
    shown = f", the oldest {len(entries)} shown" if len(entries) < pending else ""
    print(f"{pending} pending (acknowledged up to seq {acked}){shown}")
    cells = [
        [
            str(e["seq"]),
            e["receipt_no"],
            e["created_at"],
            "?" if e["age_s"] is None else output.duration(e["age_s"]),
            total_cell(e),
        ]
        for e in entries
    ]
    headers = ("seq", "receipt", "created_at", "age", "total")
    print(output.table(headers, cells, right=frozenset({0, 3, 4})))
    return EXIT_OK
