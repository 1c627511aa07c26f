"""`edgectl journal adopt`: a replaced till takes over the store's seqs by hand, edged stopped.

It does what edged does at first contact (README: Adopting a replaced till), with a longer
wait: connect to the store broker with the config's [uplink] (TLS, user, password), wait for
the store's retained ack on the terminal's ack topic, admit it through the daemon's ack gate
(the pinned collector key; the first signed ack pins one, and the key is printed so that the
technician can compare it with the store's), and let the journal adopt with its own code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from edged import log as edged_log
from edged.config import Config, UplinkSection
from edged.ctl import output, paths
from edged.ctl.errors import EXIT_OK, EXIT_PROBLEM, CtlError
from edged.ctl.journalcmd import refuse_while_running
from edged.errors import JournalError, KeyFileError
from edged.journal import Journal
from edged.journal.readonly import JournalReader
from edged.journal.seqmark import mark_path
from edged.keys import collector_pin_path, read_pin
from edged.uplink.ackgate import AckGate
from edged.uplink.client import LinkError, connect, terminal_client_id
from edged.wire import Ack, Topics, decode_ack

DEFAULT_WAIT_S = 30.0
ADOPT_TIMEOUT_S = 60.0  # the journal's renumbering: one transaction, seconds at most


@dataclass(frozen=True, slots=True)
class _Heard:
    ack: Ack | None  # the store's ack the gate admitted, None if none came in time
    ignored: int  # acks the gate refused (unsigned, another key, a bad signature)


def run(args: argparse.Namespace) -> int:
    cfg = paths.config(args)
    if cfg is None:
        raise CtlError("journal adopt needs the terminal's config ([terminal], [uplink]): --config")
    if cfg.uplink is None:
        raise CtlError(
            f"{cfg.source}: no [uplink]: a terminal without a store has nothing to adopt"
        )
    journal = Path(paths.journal_path(args))
    refuse_while_running(paths.socket_path(args))
    if not journal.exists():
        raise CtlError(
            f"no journal at {journal}: nothing to adopt. edged makes one at its first start, "
            "pending adoption, and adopts by itself when it first reaches the store",
            EXIT_PROBLEM,
        )
    before = _adoption(journal)
    if before is None or before[0] != "pending":
        return _not_pending(args, journal, before)
    edged_log.configure("warning", sys.stderr)  # the gate's and the journal's words, if any
    return asyncio.run(_adopt(args, cfg, cfg.uplink, journal))


def _adoption(journal: Path) -> tuple[str, int | None] | None:
    try:
        with JournalReader(journal) as reader:
            return reader.adoption()
    except JournalError as exc:
        raise CtlError(str(exc)) from None


def _not_pending(
    args: argparse.Namespace, journal: Path, found: tuple[str, int | None] | None
) -> int:
    if found is None:
        state, why = (
            "not_new",
            "was never pending adoption (made by `journal init`, beside a seq mark, with "
            "[journal] adopt = false, or by an edged before adoption): its seqs already go on "
            "past the old till's; nothing to do",
        )
    elif found[0] == "adopted":
        state, why = "adopted", f"is adopted already: seqs 1..{found[1]} are the store's"
    else:
        state, why = (
            "none",
            "was resolved already: when edged first reached the store, no ack of the store "
            "came, so it keeps its own seqs. If the collector reports seq_conflict for this "
            "terminal, its history was there after all: see the README (Adopting a replaced till)",
        )
    if args.json:
        output.emit_json({"adoption": state, "journal": str(journal)})
    else:
        print(f"journal {journal} {why}")
    return EXIT_OK


async def _adopt(args: argparse.Namespace, cfg: Config, up: UplinkSection, journal: Path) -> int:
    store_id, terminal_id = cfg.terminal.store_id, cfg.terminal.terminal_id
    topics = Topics(up.topic_prefix, store_id, terminal_id)
    gate = AckGate(
        collector_pin_path(journal),
        store=store_id,
        terminal=terminal_id,
        require_signed=up.require_signed_acks,
    )
    try:
        pinned_before = read_pin(gate.pin_path)
    except KeyFileError as exc:
        raise CtlError(str(exc)) from None
    client_id = terminal_client_id(up, store_id, terminal_id)  # the daemon's: it is stopped
    heard = await _store_ack(up, topics, gate, args.wait, client_id)
    if heard.ack is None:
        raise CtlError(_no_ack(topics.ack, args.wait, heard.ignored), EXIT_PROBLEM)
    pinned = read_pin(gate.pin_path)
    result = await _resolve(cfg, journal, heard.ack.upto)
    _give_to_journal_owner(journal)
    result.update(
        collector_key=pinned, collector_key_pinned_now=pinned_before is None and pinned is not None
    )
    if args.json:
        output.emit_json(result)
        return EXIT_PROBLEM if result["adoption"] == "refused" else EXIT_OK
    if result["collector_key_pinned_now"]:
        print(
            f"pinned the collector key {pinned} from the store's first signed ack: compare it "
            "with `edged collector --config F keys` (collector_key) at the store"
        )
    if result["adoption"] == "adopted":
        upto = result["store_upto"]
        print(
            f"adopted: seqs 1..{upto} are the store's (the till this one replaced); seq "
            f"{upto + 1} records it, {result['renumbered']} provisional entries were renumbered "
            f"after it; the next sale is seq {result['next_seq']}"
        )
    elif result["adoption"] == "refused":
        print(
            f"not renumbered: a provisional entry is damaged (journal_adoption_refused above). "
            f"The journal goes on after the store's seqs 1..{result['store_upto']} with a "
            f"journal_gap entry (next sale: seq {result['next_seq']}); its earlier entries reach "
            "the store as seq_conflict evidence. Check the disk (edgectl doctor, journal verify)"
        )
        return EXIT_PROBLEM
    else:
        print(
            f"the store holds no sales of {store_id}/{terminal_id}: this journal keeps its seqs; "
            f"the next sale is seq {result['next_seq']}"
        )
    return EXIT_OK


async def _store_ack(
    up: UplinkSection, topics: Topics, gate: AckGate, wait_s: float, client_id: str
) -> _Heard:
    """The first ack on the terminal's ack topic that the gate admits, within `wait_s`."""
    probe = topics.status.removesuffix("/status") + "/probe"
    try:
        async with (
            connect(
                up, client_id=client_id, will=None, subscribe=[topics.ack], probe_topic=probe
            ) as conn,
        ):
            try:
                async with asyncio.timeout(wait_s):
                    async for message in conn.messages():
                        if message.topic != topics.ack:
                            continue
                        try:
                            ack = decode_ack(message.payload)
                        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                            output.warn(f"ignored a malformed ack on {message.topic}: {exc}")
                            continue
                        if gate.admit(ack, message.topic):
                            return _Heard(ack, gate.rejected)
            except TimeoutError:
                pass
    except LinkError as exc:
        raise CtlError(f"cannot reach the store broker: {exc}") from None
    return _Heard(None, gate.rejected)


def _no_ack(topic: str, wait_s: float, ignored: int) -> str:
    if ignored:
        return (
            f"{ignored} ack(s) on {topic} were not signed by the collector key this till trusts "
            "(see ack_ignored above); nothing adopted. Compare `edgectl keys show` with the "
            "store's key (`edged collector --config F keys`); pin it with `edgectl keys "
            "pin-collector KEY`, then run this again"
        )
    return (
        f"no ack of the store on {topic} within {wait_s:g} s; nothing adopted. Either the store "
        "holds nothing for this terminal id (a new till: start edged, its journal keeps its "
        "seqs), or the broker lost its retained messages (restarted without persistence: check "
        "that the collector runs and is connected, as it publishes every terminal's ack again "
        "when it connects, then run this again)"
    )


async def _resolve(cfg: Config, path: Path, store_upto: int) -> dict[str, Any]:
    """Let the journal adopt the store's seqs 1..store_upto, as edged does at first contact."""
    terminal = cfg.terminal
    try:
        journal = await Journal.open(
            path,
            store_id=terminal.store_id,
            terminal_id=terminal.terminal_id,
            receipt_format=terminal.receipt_format,
        )
    except JournalError as exc:
        raise CtlError(str(exc)) from None
    try:
        provisional = journal.stats().last_seq
        journal.resolve_adoption(store_upto)
        try:
            async with asyncio.timeout(ADOPT_TIMEOUT_S):
                await journal.wait_adopted()
        except TimeoutError:
            raise CtlError(
                f"journal {path}: the adoption could not be written (see above); nothing changed"
            ) from None
        last_seq = journal.stats().last_seq
    finally:
        await journal.close()
    state = _adoption(path)
    adopted = state is not None and state[0] == "adopted"
    outcome = "adopted" if adopted else "refused" if store_upto else "none"
    return {
        "adoption": outcome,
        "store_upto": store_upto,
        "renumbered": provisional if adopted else 0,
        "next_seq": last_seq + 1,
        "journal": str(path),
    }


def _give_to_journal_owner(journal: Path) -> None:
    """Run as root, the seq mark this may have created must stay the daemon user's."""
    if os.geteuid() != 0:
        return
    owner = journal.stat()
    mark = mark_path(journal)
    if mark.exists() and mark.stat().st_uid != owner.st_uid:
        os.chown(mark, owner.st_uid, owner.st_gid)
