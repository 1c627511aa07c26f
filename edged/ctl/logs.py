"""`edgectl logs`: the daemon's recent events from the systemd journal, one per line."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from typing import Any

from edged.ctl import output
from edged.ctl.errors import EXIT_OK, CtlError

NO_JOURNALCTL = (
    "journalctl is not installed here: edged writes its events to stderr (JSON lines when "
    "stderr is not a terminal); under systemd they are in the journal, otherwise look where "
    "the program that starts edged sends its stderr"
)
_FIRST = ("timestamp", "level", "event")


def human(line: str) -> str:
    """A JSON event line as `time level event key=value ...`; other lines as they are."""
    try:
        event: Any = json.loads(line)
    except ValueError:
        return line
    if not isinstance(event, dict) or "event" not in event:
        return line
    head = f"{event.get('timestamp', '-')} {event.get('level', '-'):<7} {event['event']}"
    fields = " ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in event.items()
        if key not in _FIRST
    )
    return f"{head} {fields}".rstrip()


def run(args: argparse.Namespace) -> int:
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise CtlError(NO_JOURNALCTL)
    command = [journalctl, "-u", args.unit, "-o", "cat", "-n", str(args.n), "--no-pager"]
    if args.follow:
        command.append("--follow")
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        shown = 0
        try:
            for line in proc.stdout:
                print(line.rstrip("\n") if args.json else human(line.rstrip("\n")), flush=True)
                shown += 1
        except KeyboardInterrupt:  # the way out of --follow
            proc.terminate()
            return EXIT_OK
        problem = proc.stderr.read().strip()
        status = proc.wait()
    if status != 0:
        raise CtlError(
            f"journalctl exited {status}: {problem or 'no reason given'}; reading the journal "
            "needs root or group systemd-journal (or adm)"
        )
    if problem:  # e.g. "No journal files were found."
        output.warn(f"journalctl: {problem}")
    elif not shown:
        output.warn(f"the systemd journal has no events of unit {args.unit} (not run by systemd?)")
    return EXIT_OK
