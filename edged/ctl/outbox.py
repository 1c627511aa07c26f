"""`edgectl outbox`: the sales not yet acknowledged by the store, oldest first, from the file."""

from __future__ import annotations

import argparse

from edged.ctl import output, paths, rpc
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
    gap = _store_permanent_gap(args)
    for entry in entries:
        entry["age_s"] = None if entry["damage"] else output.seconds_since(entry["created_at"])
    if args.json:
        output.emit_json(
            {
                "pending": pending,
                "acked_upto": acked,
                "store_permanent_gap": gap,
                "entries": entries,
            }
        )
        return EXIT_OK
    if gap:
        print(
            f"the store lacks seqs {gap[0]}..{gap[1]}, purged here: a permanent gap; sales stay "
            "pending until a store admin accepts it (edged collector ... accept-gap)"
        )
    if not pending:
        print(f"outbox empty: every sale up to seq {last} is acknowledged by the store")
        return EXIT_OK
    shown = f", the oldest {len(entries)} shown" if len(entries) < pending else ""
    print(f"{pending} pending (acknowledged up to seq {acked}){shown}")
    where = paths.zone(args)
    cells = [
        [
            str(e["seq"]),
            e["receipt_no"],
            output.when(e["created_at"], where),
            "?" if e["age_s"] is None else output.duration(e["age_s"]),
            total_cell(e),
        ]
        for e in entries
    ]
    headers = ("seq", "receipt", "time", "age", "total")
    print(output.table(headers, cells, right=frozenset({0, 3, 4})))
    return EXIT_OK


def _store_permanent_gap(args: argparse.Namespace) -> list[int] | None:
    """The store's permanent gap as the running daemon learned it; None if none or no daemon."""
    try:
        status = rpc.request(paths.socket_path(args), "status")
    except CtlError:
        return None
    gap = status.get("link", {}).get("store_permanent_gap")
    return list(gap) if gap else None
