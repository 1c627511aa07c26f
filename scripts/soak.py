"""Run randomized fault schedules; print one JSON line per run; exit 1 if any lost or doubled."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fault.chaos import run_schedule
from tests.fault.rig import Store


async def one(seed: int, steps: int, verbose: bool) -> bool:
    with tempfile.TemporaryDirectory(prefix=f"edged-soak-{seed}-") as tmp:
        async with Store(Path(tmp)) as store:
            await store.wait("online", lambda s: s["link"]["state"] == "online")
            result = await run_schedule(
                store,
                seed,
                steps,
                log=(lambda m: print(m, file=sys.stderr)) if verbose else (lambda m: None),
            )
    report = result.consistency
    assert report is not None
    print(
        json.dumps(
            {
                "seed": seed,
                "ok": result.ok,
                "steps": len(result.steps),
                "confirmed": result.confirmed,
                "retried_commits": result.retries,
                "stored": report.stored,
                "lost": len(report.lost),
                "duplicated": report.duplicated,
                "mismatched": len(report.mismatched),
                "missing_confirmed": len(result.missing_confirmed),
            }
        ),
        flush=True,
    )
    return result.ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="schedules to run (default 5)")
    parser.add_argument("--steps", type=int, default=20, help="faults per schedule (default 20)")
    parser.add_argument("--seed", type=int, help="first seed (default random); runs use seed+i")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each fault")
    args = parser.parse_args()
    os.environ.setdefault("EDGED_LOG_LEVEL", "warning")
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    failures = 0
    for i in range(args.runs):
        if not asyncio.run(one(first + i, args.steps, args.verbose)):
            failures += 1
    print(f"{args.runs - failures} passed, {failures} failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
