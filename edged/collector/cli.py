"""`edged collector`: run the collector, or print its db report (`status`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from edged.collector.service import run_collector
from edged.collector.store import CollectorStoreError, collector_report
from edged.config import CollectorConfig, load_collector_config
from edged.errors import ConfigError

EX_CONFIG = 78
EX_FAILURE = 1
DEFAULT_COLLECTOR_CONFIG = "/etc/edged/collector.toml"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="edged collector",
        description="Store-side collector: stores terminals' sales and acknowledges them.",
    )
    parser.add_argument("--config", default=DEFAULT_COLLECTOR_CONFIG, help="collector TOML")
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "status"),
        default="run",
        help="run (default) or status: print the db report as JSON",
    )
    args = parser.parse_args(argv)
    try:
        cfg = load_collector_config(args.config)
        if args.command == "status":
            print(json.dumps(collector_report(cfg.collector.db), indent=2))
            return 0
        return asyncio.run(_run(cfg))
    except ConfigError as exc:
        print(f"edged collector: {exc}", file=sys.stderr)
        return EX_CONFIG
    except CollectorStoreError as exc:
        print(f"edged collector: {exc}", file=sys.stderr)
        return EX_FAILURE


async def _run(cfg: CollectorConfig) -> int:
    """Run until SIGTERM or SIGINT, then leave the broker cleanly."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await run_collector(cfg)
    except asyncio.CancelledError:
        task.uncancel()
    return 0
