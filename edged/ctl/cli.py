"""The `edgectl` command line: arguments, dispatch, and how errors become exit statuses."""

from __future__ import annotations

import argparse
import os
import sys

from edged import __version__
from edged.config import DEFAULT_CONFIG_PATH
from edged.ctl import (
    adopt,
    bundle,
    diag,
    doctor,
    journalcmd,
    keys,
    logs,
    outbox,
    receipt,
    refdata,
    scanwatch,
    status,
    sync,
)
from edged.ctl.errors import EXIT_INTERRUPTED, EXIT_OK, CtlError

EPILOG = (
    "exit status: 0 ok; 1 a check failed or a problem was found; "
    "2 usage error or the command could not run (daemon unreachable, bad config)"
)


def _parents() -> dict[str, argparse.ArgumentParser]:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    # Also accepted after the command; SUPPRESS keeps a --config given before it.
    common.add_argument("--config", default=argparse.SUPPRESS, help="edged config file")
    sock = argparse.ArgumentParser(add_help=False)
    sock.add_argument("--socket", help="the daemon's socket (default: from the config)")
    journal = argparse.ArgumentParser(add_help=False)
    journal.add_argument("--journal", help="the journal file (default: from the config)")
    return {"common": common, "socket": sock, "journal": journal}


def parser() -> argparse.ArgumentParser:
    p = _parents()
    api, offline = [p["common"], p["socket"]], [p["common"], p["journal"]]
    top = argparse.ArgumentParser(
        prog="edgectl", description="The technician's tool for an edged terminal.", epilog=EPILOG
    )
    top.add_argument("--version", action="version", version=f"edgectl {__version__}")
    top.add_argument("--config", help=f"edged config (default {DEFAULT_CONFIG_PATH} if it exists)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cmd = sub.add_parser("status", parents=api, help="link, backlog, devices, journal, version")
    cmd.set_defaults(func=status.run)

    cmd = sub.add_parser(
        "doctor",
        parents=[*api, p["journal"]],
        help="check config, daemon, journal, devices, broker, link, backlog, disk, clock",
    )
    cmd.add_argument(
        "--daemon-user",
        metavar="USER",
        help="check device access as USER (default: edged.service's User=, else edged)",
    )
    cmd.set_defaults(func=doctor.run)

    diag_cmd = sub.add_parser("diag", help="try one device through the daemon")
    dsub = diag_cmd.add_subparsers(dest="device", required=True, metavar="DEVICE")
    cmd = dsub.add_parser("printer", parents=api, help="printer status; --test-page prints one")
    cmd.add_argument(
        "--test-page", action="store_true", help="print a test slip (only on a ready printer)"
    )
    cmd.set_defaults(func=diag.printer)
    cmd = dsub.add_parser("drawer", parents=api, help="open the cash drawer")
    cmd.set_defaults(func=diag.drawer)
    cmd = dsub.add_parser("scanner", parents=api, help="show scans live")
    cmd.add_argument("--watch", type=float, required=True, metavar="SECONDS", help="how long")
    cmd.add_argument("--count", type=int, metavar="N", help="stop after N scans")
    cmd.set_defaults(func=scanwatch.run)
    cmd = dsub.add_parser("payment", parents=api, help="is the payment terminal answering?")
    cmd.add_argument(
        "--ping", action="store_true", help="report its state (the only mode, the default)"
    )
    cmd.set_defaults(func=diag.payment)

    cmd = sub.add_parser(
        "outbox", parents=[*offline, p["socket"]], help="pending sales, oldest first"
    )
    cmd.add_argument("--limit", type=int, default=20, help="show at most N (default 20)")
    cmd.set_defaults(func=outbox.run)

    cmd = sub.add_parser("sync", parents=api, help="flush the outbox now, with progress")
    cmd.add_argument(
        "--timeout", type=float, default=60.0, help="give up after SECONDS (default 60)"
    )
    cmd.set_defaults(func=sync.run)

    cmd = sub.add_parser(
        "refdata", parents=api, help="reference data snapshot in use; `use DATE` picks one"
    )
    cmd.add_argument("action", nargs="?", choices=("show", "use"), default="show")
    cmd.add_argument(
        "date", nargs="?", default="today", help="use: YYYY-MM-DD, or today (the default)"
    )
    cmd.set_defaults(func=refdata.run)

    journal = sub.add_parser("journal", help="the journal file, daemon running or not")
    jsub = journal.add_subparsers(dest="journal_command", required=True, metavar="ACTION")
    cmd = jsub.add_parser("verify", parents=offline, help="seq continuity and the hash chain")
    cmd.set_defaults(func=journalcmd.verify)
    cmd = jsub.add_parser("tail", parents=offline, help="the last entries")
    cmd.add_argument("-n", type=int, default=10, help="how many (default 10)")
    cmd.set_defaults(func=journalcmd.tail)
    cmd = jsub.add_parser("export", parents=offline, help="entries as JSON lines, for support")
    cmd.add_argument("--from", dest="from_seq", type=int, metavar="SEQ", help="first seq")
    cmd.add_argument("--to", dest="to_seq", type=int, metavar="SEQ", help="last seq")
    cmd.add_argument("--out", metavar="FILE", help="write to FILE (default: stdout)")
    cmd.set_defaults(func=journalcmd.export)
    cmd = jsub.add_parser(
        "backup", parents=offline, help="a consistent, verified copy, daemon running or not"
    )
    cmd.add_argument("file", metavar="FILE", help="where to write the copy (mode 0640)")
    cmd.add_argument("--force", action="store_true", help="replace FILE if it exists")
    cmd.set_defaults(func=journalcmd.backup)
    cmd = jsub.add_parser(
        "init",
        parents=[*offline, p["socket"]],
        help="create the journal; --force sets an existing one aside (daemon stopped)",
    )
    cmd.add_argument(
        "--force", action="store_true", help="set the existing journal files aside first"
    )
    cmd.set_defaults(func=journalcmd.init)
    cmd = jsub.add_parser(
        "adopt",
        parents=[*offline, p["socket"]],
        help="a replaced till takes over the store's seqs now (edged stopped)",
    )
    cmd.add_argument(
        "--wait",
        type=float,
        default=adopt.DEFAULT_WAIT_S,
        metavar="SECONDS",
        help=f"wait this long for the store's ack (default {adopt.DEFAULT_WAIT_S:g})",
    )
    cmd.set_defaults(func=adopt.run)

    keys_cmd = sub.add_parser(
        "keys", help="the terminal's signing key and the pinned collector key"
    )
    ksub = keys_cmd.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    cmd = ksub.add_parser("show", parents=offline, help="both public keys")
    cmd.set_defaults(func=keys.show)
    cmd = ksub.add_parser(
        "pin-collector", parents=offline, help="trust only this collector key (hex) from now on"
    )
    cmd.add_argument("key", metavar="KEY", help="the collector's public key, 64 hex digits")
    cmd.set_defaults(func=keys.pin_collector)
    cmd = ksub.add_parser(
        "forget-collector", parents=offline, help="the next signed ack pins its key again"
    )
    cmd.set_defaults(func=keys.forget_collector)

    cmd = sub.add_parser("logs", parents=[p["common"]], help="recent daemon events (journalctl)")
    cmd.add_argument("-n", type=int, default=50, help="how many (default 50)")
    cmd.add_argument("--follow", "-f", action="store_true", help="keep showing new events")
    cmd.add_argument("--unit", default="edged", help="systemd unit (default edged)")
    cmd.set_defaults(func=logs.run)

    cmd = sub.add_parser(
        "bundle",
        parents=[*offline, p["socket"]],
        help="one archive for support: versions, redacted config, status, doctor, logs",
    )
    cmd.add_argument("--out", metavar="FILE", help="the archive (default edged-bundle-*.tar.gz)")
    cmd.add_argument(
        "-n",
        type=int,
        default=bundle.DEFAULT_LINES,
        metavar="LINES",
        help=f"log lines (default {bundle.DEFAULT_LINES})",
    )
    cmd.add_argument(
        "--log-file", metavar="FILE", help="read the log here, not from journalctl -u edged"
    )
    cmd.set_defaults(func=bundle.run)

    cmd = sub.add_parser("receipt", parents=offline, help="render a sale's receipt from the file")
    cmd.add_argument("seq", type=int, help="the journal entry's seq")
    cmd.add_argument("--png", metavar="FILE", help="write the receipt as a PNG image")
    cmd.add_argument("--text", action="store_true", help="print it as text")
    cmd.set_defaults(func=receipt.run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CtlError as exc:
        print(f"edgectl: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `edgectl journal export | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
