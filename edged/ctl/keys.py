"""`edgectl keys`: the terminal's signing key and the collector key it pinned (README: Keys)."""

from __future__ import annotations

import argparse
import os
import stat
from typing import Any

from edged.ctl import output, paths
from edged.ctl.checks import Check
from edged.ctl.errors import EXIT_OK, CtlError
from edged.errors import KeyFileError
from edged.keys import (
    collector_pin_path,
    forget_pin,
    read_pin,
    read_public,
    terminal_key_path,
    write_pin,
)
from edged.signing import check_key_hex


def show(args: argparse.Namespace) -> int:
    journal = paths.journal_path(args)
    found = _keys(journal)
    if args.json:
        output.emit_json(found)
        return EXIT_OK
    print(f"terminal key   {found['terminal_key'] or '- (made at the daemon first start)'}")
    print(f"collector key  {found['collector_key'] or '- (pinned from its first signed ack)'}")
    return EXIT_OK


def pin_collector(args: argparse.Namespace) -> int:
    try:
        key = check_key_hex(args.key)
        write_pin(collector_pin_path(paths.journal_path(args)), key)
    except (ValueError, KeyFileError) as exc:
        raise CtlError(str(exc)) from None
    print(f"collector key {key} pinned: acks signed by any other key are ignored")
    return EXIT_OK


def forget_collector(args: argparse.Namespace) -> int:
    try:
        had = forget_pin(collector_pin_path(paths.journal_path(args)))
    except OSError as exc:
        raise CtlError(f"cannot remove the pinned collector key: {exc}") from None
    print(
        "pinned collector key forgotten: the next signed ack pins its key"
        if had
        else "no collector key was pinned"
    )
    return EXIT_OK


def _keys(journal: str) -> dict[str, Any]:
    try:
        pinned: str | None = read_pin(collector_pin_path(journal))
    except KeyFileError as exc:
        pinned = f"unreadable: {exc}"
    return {"terminal_key": read_public(terminal_key_path(journal)), "collector_key": pinned}


def key_check(journal: str, status: dict[str, Any] | None) -> Check:
    """`doctor`: the terminal key exists, only its owner can read it; which collector is pinned."""
    path = terminal_key_path(journal)
    key = (status or {}).get("terminal", {}).get("key") or read_public(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return Check("keys", "WARN", f"no terminal key at {path}", "start the daemon: it makes one")
    except OSError as exc:
        return Check("keys", "WARN", f"cannot see {path}: {exc}")
    if mode & 0o077:
        return Check(
            "keys",
            "FAIL",
            f"{path} is mode {mode:04o}: others may read the key",
            f"chmod 600 {path}",
        )
    found = _keys(journal)
    collector = found["collector_key"] or "no collector key pinned yet"
    return Check(
        "keys", "OK", f"terminal {key or '(not readable by this user)'}; collector {collector}"
    )
