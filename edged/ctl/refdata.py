"""`edgectl refdata [use DATE]`: the reference data snapshot in use, and picking one by date."""

from __future__ import annotations

import argparse
from datetime import tzinfo
from typing import Any

from edged.ctl import output, paths, rpc
from edged.ctl.errors import EXIT_OK, EXIT_PROBLEM


def run(args: argparse.Namespace) -> int:
    sock = paths.socket_path(args)
    if args.action == "use":
        status = rpc.request(sock, "refdata.use", {"date": args.date})
    else:
        status = rpc.request(sock, "refdata.status")
    if args.json:
        output.emit_json(status)
    else:
        _show(status, paths.zone(args))
    return EXIT_OK if status["active"] is not None else EXIT_PROBLEM


def _show(status: dict[str, Any], where: tzinfo) -> None:
    """The status for a person, its times in the store's zone `where` (as on the receipts)."""
    active = status["active"]
    chosen = "today" if status["chosen_by"] == "today" else "chosen by refdata use"
    print(f"wanted date  {status['wanted_date']} ({chosen})")
    if active is None:
        print("in use       none: no snapshot received yet (lookups answer null)")
    else:
        age = status["age_s"]
        published = output.when(active["published_at"], where)
        print(
            f"in use       {active['date']} ({active['articles']} articles, "
            f"{active['discounts']} discounts; published {published}"
            + (f", {output.duration(int(age))} ago)" if age is not None else ")")
        )
    if status["assembling"]:
        a = status["assembling"]
        print(f"receiving    {a['date']}: {a['staged']} of {a['chunks']} chunks")
    refusal = status["last_refusal"]
    if refusal:
        print(
            f"last refused {refusal['date'] or '?'} at {output.when(refusal['at'], where)}: "
            f"{refusal['problem']}"
        )
    rows = [
        [s["date"], s["id"], str(s["articles"]), "in use" if s["active"] else ""]
        for s in status["snapshots"]
    ]
    print(f"kept         {len(rows)} of at most {status['keep']}")
    if rows:
        print(output.table(("date", "id", "articles", ""), rows, right=frozenset({2})))
