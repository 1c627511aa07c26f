"""Run randomized fault schedules, storage faults included; one JSON line per run, a summary.

Per run: every sale the seller was told was committed is stored once, lost (silently),
duplicated, mismatched, or reported lost (named as lost by the system itself: a journal_gap
entry, a damaged_entry at the store, a refused start overridden with `journal init --force`).
Exit 1 if any run lost, duplicated or changed a sale, got stuck, or broke a documented refusal;
reported losses are counted, not failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fault.chaos import CHAOS_DISK_KIB, run_schedule
from tests.fault.rig import Store

COUNTED = ("committed", "stored_once", "lost", "duplicated", "mismatched", "reported_lost")


async def one(seed: int, steps: int, verbose: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"edged-soak-{seed}-") as tmp:
        async with Store(Path(tmp), journal_disk_kib=CHAOS_DISK_KIB) as store:
            await store.wait("online", lambda s: s["link"]["state"] == "online")
            result = await run_schedule(
                store,
                seed,
                steps,
                log=(lambda m: print(m, file=sys.stderr)) if verbose else (lambda m: None),
            )
    report, sales = result.consistency, result.reconciliation
    assert report is not None
    assert sales is not None
    line = {
        "seed": seed,
        "ok": result.ok,
        "steps": len(result.steps),
        "faults": sorted({step.split(":")[0].split(" ")[0] for step in result.steps}),
        **sales.counts(),
        "retried_commits": result.retries,
        "stored_rows": report.stored,
        "journal_vs_store": {
            "lost": len(report.lost),
            "extra": len(report.extra),
            "mismatched": len(report.mismatched),
            "duplicated": report.duplicated,
        },
        "problems": [problem.splitlines()[0][:200] for problem in result.problems],
    }
    print(json.dumps(line), flush=True)
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="schedules to run (default 5)")
    parser.add_argument("--steps", type=int, default=20, help="faults per schedule (default 20)")
    parser.add_argument("--seed", type=int, help="first seed (default random); runs use seed+i")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each fault")
    args = parser.parse_args()
    os.environ.setdefault("EDGED_LOG_LEVEL", "warning")
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    lines = [asyncio.run(one(first + i, args.steps, args.verbose)) for i in range(args.runs)]
    failures = sum(not line["ok"] for line in lines)
    summary = {
        "summary": True,
        "runs": args.runs,
        "passed": args.runs - failures,
        "failed": failures,
        "first_seed": first,
        **{key: sum(line[key] for line in lines) for key in COUNTED},
        "problems": sum(len(line["problems"]) for line in lines),
    }
    print(json.dumps(summary), flush=True)
    print(f"{args.runs - failures} passed, {failures} failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
