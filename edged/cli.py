"""`edged run` (the terminal daemon) and `edged collector` (the store-side consumer)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from edged import __version__
from edged.config import (
    DEFAULT_CONFIG_PATH,
    CollectorConfig,
    load_collector_config,
    load_config,
)
from edged.errors import ConfigError, EdgedError, JournalError
from edged.sdnotify import Notifier

EX_FAILURE = 1
EX_USAGE = 64  # sysexits.h: the command line is wrong
EX_DATAERR = 65  # sysexits.h: the input file is wrong
EX_IOERR = 74  # sysexits.h: the journal, or the collector's database, cannot be used
EX_CONFIG = 78  # sysexits.h: configuration error; systemd should not restart


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edged", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the terminal daemon"),
        ("collector", "run the store collector"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="TOML config file")
        cmd.add_argument(
            "--log-level", choices=("debug", "info", "warning", "error"), help="default info"
        )
        if name == "collector":
            cmd.add_argument(
                "action",
                nargs="?",
                choices=("run", "status", "init", "keys", "accept-gap", "refdata"),
                default="run",
                help="run (default); status: print the database's per-terminal report as JSON; "
                "init: accept the database file as this collector's, creating an empty one if "
                "there is none (needed only after it was lost or replaced); "
                "keys list | keys pin STORE TERMINAL KEY | keys forget STORE TERMINAL: "
                "the terminal keys the collector trusts; accept-gap STORE TERMINAL FROM TO: "
                "accept a permanent gap (seqs the terminal purged) as lost; "
                "refdata publish FILE --store S --date YYYY-MM-DD: publish a reference data "
                "snapshot (CSV or JSON) to the store's terminals",
            )
            cmd.add_argument(
                "words", nargs="*", metavar="ARG", help="keys, accept-gap: their arguments"
            )
            cmd.add_argument("--by", help="accept-gap: who accepts (default: the login name)")
            cmd.add_argument("--store", help="refdata publish: the store id")
            cmd.add_argument("--date", help="refdata publish: the first day it applies")
            cmd.add_argument(
                "--chunk-kib", type=int, help="refdata publish: chunk size in KiB (256)"
            )
    return parser


async def _collector(cfg: CollectorConfig) -> None:
    """Run the collector until SIGTERM/SIGINT; READY=1 to systemd once it is subscribed."""
    from edged.collector.service import GIL_SWITCH_S, run_collector

    sys.setswitchinterval(GIL_SWITCH_S)
    loop = asyncio.get_running_loop()
    notifier = Notifier()
    ready = asyncio.Event()
    task = asyncio.create_task(run_collector(cfg, ready=ready), name="collector")
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    waiter = asyncio.create_task(ready.wait(), name="collector-ready")
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if ready.is_set():
        notifier.notify("READY=1", "STATUS=subscribed")
    waiter.cancel()
    try:
        await task
    except asyncio.CancelledError:
        notifier.notify("STOPPING=1")
    finally:
        notifier.close()


def _accept_gap(cfg: CollectorConfig, gap: list[str], by: str | None) -> str:
    """`edged collector accept-gap STORE TERMINAL FROM TO [--by NAME]`."""
    from edged.collector import CollectorStore
    from edged.collector.dburl import configured
    from edged.collector.rebuild import AcceptGapError

    if len(gap) != 4 or not all(part.isdigit() for part in gap[2:]):
        raise AcceptGapError("accept-gap takes STORE TERMINAL FROM TO (FROM and TO are seqs)")
    store_id, terminal_id, first, to = gap[0], gap[1], int(gap[2]), int(gap[3])
    if not 1 <= first <= to:
        raise AcceptGapError(f"accept-gap: FROM {first} must be at least 1 and not above TO {to}")
    who = by or os.environ.get("SUDO_USER") or getpass.getuser()
    store = CollectorStore.open(configured(cfg.collector))
    try:
        return store.accept_gap((store_id, terminal_id), first, to, who)
    finally:
        store.close()


def _refdata(cfg: CollectorConfig, words: list[str], options: dict[str, Any]) -> int:
    """`edged collector refdata publish FILE --store S --date D [--chunk-kib N]`."""
    from edged.collector.refpublish import PublishError, publish_refdata
    from edged.collector.refsource import RefdataSourceError

    if len(words) != 2 or words[0] != "publish" or not options.get("store"):
        print(
            "edged: usage: edged collector refdata publish FILE --store STORE --date YYYY-MM-DD",
            file=sys.stderr,
        )
        return EX_USAGE
    if not options.get("date"):
        print("edged: refdata publish needs --date YYYY-MM-DD", file=sys.stderr)
        return EX_USAGE
    kib = options.get("chunk_kib")
    try:
        manifest = asyncio.run(
            publish_refdata(
                cfg,
                Path(words[1]),
                store=options["store"],
                date=options["date"],
                chunk_bytes=kib * 1024 if kib else None,
            )
        )
    except RefdataSourceError as exc:
        print(f"edged: {words[1]} cannot be published:\n{exc}", file=sys.stderr)
        return EX_DATAERR
    except PublishError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EX_USAGE
    print(json.dumps(manifest, indent=2))
    return 0


def _collector_main(
    action: str,
    cfg: CollectorConfig,
    words: list[str] | None = None,
    by: str | None = None,
    options: dict[str, Any] | None = None,
) -> int:
    """`edged collector run|status|init|keys|accept-gap`; 74 when its database is missing or
    was replaced."""
    from edged.collector import CollectorDbChangedError, collector_report, init_collector_db
    from edged.collector.dburl import configured
    from edged.collector.keyadmin import keys_command

    if action not in ("accept-gap", "keys", "refdata") and words:
        print(
            f"edged: collector {action} takes no arguments, got {' '.join(words)}", file=sys.stderr
        )
        return EX_USAGE
    try:
        if action == "keys":
            try:
                print(json.dumps(keys_command(configured(cfg.collector), words or []), indent=2))
            except ValueError as exc:
                print(f"edged: {exc}", file=sys.stderr)
                return EX_USAGE
        elif action == "refdata":
            return _refdata(cfg, words or [], options or {})
        elif action == "accept-gap":
            print(_accept_gap(cfg, words or [], by))
        elif action == "status":
            print(json.dumps(collector_report(configured(cfg.collector)), indent=2))
        elif action == "init":
            print(init_collector_db(configured(cfg.collector)))
        else:
            asyncio.run(_collector(cfg))
    except CollectorDbChangedError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EX_IOERR
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from edged import log

    log.configure(args.log_level)
    try:
        if args.command == "run":
            from edged import daemon

            asyncio.run(daemon.run(load_config(args.config)))
        else:
            cfg = load_collector_config(args.config)
            options = {"store": args.store, "date": args.date, "chunk_kib": args.chunk_kib}
            return _collector_main(args.action, cfg, args.words, args.by, options)
    except ConfigError as exc:
        print(f"edged: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except JournalError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EX_IOERR
    except EdgedError as exc:  # e.g. the API socket is in use, the collector db unusable
        print(f"edged: {exc}", file=sys.stderr)
        return EX_FAILURE
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
