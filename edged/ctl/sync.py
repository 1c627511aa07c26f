"""`edgectl sync`: flush the outbox now and watch it drain, with a progress bar."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from edged.ctl import output, paths, rpc
from edged.ctl.errors import EXIT_OK, EXIT_PROBLEM, CtlError

BAR_WIDTH = 30
# Connecting, subscribing and reading the status take milliseconds; a daemon that needs longer
# is hung or starved, and a technician must hear so instead of waiting on a silent command.
SETUP_TIMEOUT_S = 10.0


@dataclass(slots=True)
class Backlog:
    """The outbox as the daemon reports it, relative to where this sync started."""

    start_acked: int
    acked: int
    last_seq: int
    link: str

    @property
    def pending(self) -> int:
        return self.last_seq - self.acked

    @property
    def sent(self) -> int:
        return self.acked - self.start_acked

    def as_dict(self) -> dict[str, Any]:
        return {
            "drained": self.pending == 0,
            "pending": self.pending,
            "sent": self.sent,
            "acked_upto": self.acked,
            "last_seq": self.last_seq,
            "link": self.link,
        }


class ProgressBar:
    """Redrawn in place with \\r on a terminal; one line per change otherwise (logs, pipes)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = ""

    def show(self, backlog: Backlog) -> None:
        total = backlog.sent + backlog.pending
        filled = BAR_WIDTH if total == 0 else BAR_WIDTH * backlog.sent // total
        line = (
            f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {backlog.sent}/{total} sent, "
            f"{backlog.pending} pending, link {backlog.link}"
        )
        if line == self._last:
            return
        if self._tty:
            self._stream.write(f"\r{line}{' ' * max(0, len(self._last) - len(line))}")
        else:
            self._stream.write(f"{line}\n")
        self._stream.flush()
        self._last = line

    def end(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


def _apply(backlog: Backlog, event: dict[str, Any]) -> None:
    data = event["data"]
    if event["type"] == "outbox":
        backlog.acked, backlog.last_seq = data["acked_upto"], data["last_seq"]
    elif event["type"] == "link":
        backlog.link = data["state"]


async def _sync(sock: str, timeout_s: float, bar: ProgressBar | None) -> Backlog:
    async with rpc.connect(sock) as client:
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_S):
                # Subscribe before reading the status, so no change falls between the two.
                await rpc.call(client, "subscribe", {"events": ["outbox", "link"]})
                status = await rpc.call(client, "status")
        except TimeoutError:
            raise CtlError(
                f"edged did not answer on {sock} within {SETUP_TIMEOUT_S:g} s: it is hung or "
                "overloaded; see `edgectl logs` and `systemctl status edged`"
            ) from None
        if status["link"]["state"] == "disabled":
            raise CtlError("this terminal has no [uplink]: its journal is not forwarded anywhere")
        acked = status["outbox"]["acked_upto"]
        backlog = Backlog(acked, acked, status["journal"]["last_seq"], status["link"]["state"])
        flush = asyncio.create_task(rpc.call(client, "sync.now"), name="sync-now")
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    events = client.events()
                    while True:
                        if bar is not None:
                            bar.show(backlog)
                        if backlog.pending == 0:
                            break
                        _apply(backlog, await anext(events))
        finally:
            if bar is not None:
                bar.end()
            flush.cancel()
            outcomes: list[object] = await asyncio.gather(flush, return_exceptions=True)
        if isinstance(outcomes[0], CtlError):
            raise outcomes[0]
        return backlog


def run(args: argparse.Namespace) -> int:
    bar = None if args.json else ProgressBar(sys.stdout)
    backlog = asyncio.run(_sync(paths.socket_path(args), args.timeout, bar))
    if args.json:
        output.emit_json(backlog.as_dict())
    if backlog.pending:
        output.warn(
            f"timed out after {args.timeout:g} s: {backlog.pending} still pending, "
            f"link {backlog.link}; edged keeps sending on its own (see `edgectl status`)"
        )
        return EXIT_PROBLEM
    if not args.json:
        print(f"synced: {backlog.sent} sent, nothing pending (acked up to seq {backlog.acked})")
    return EXIT_OK
