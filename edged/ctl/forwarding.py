"""Forwarding checks of `edgectl doctor`: does the daemon's link work, and does the backlog age?

A broker that answers doctor while the daemon stays offline means the daemon itself is stuck
(or refused with its own credentials or client id): the incident of a silently dead uplink
with thousands of sales piling up. Before saying so, doctor asks the daemon to retry at once
(`sync.now`, as `edgectl sync` does) and reads its state again, so a daemon that is only
waiting out its reconnect backoff after an outage is not blamed.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from edged.backlog import Severity, Thresholds
from edged.ctl import output, rpc
from edged.ctl.checks import Check
from edged.ctl.errors import CtlError
from edged.errors import JournalError
from edged.journal import readonly

DOWN = ("offline", "connecting")
# sync.now returns once the next attempt ends; an attempt already under way when doctor asks
# (begun before the broker came back) may be that one, so doctor asks at most this often.
RETRY_ASKS = 2
STUCK_TODO = (
    "`edgectl logs` says why it fails; then `systemctl restart edged`; if it stays offline, "
    "compare edged's uplink user, password and client id (uplink.client_id, default "
    "edged-STORE-TERMINAL) with what the broker allows (doctor used edgectl-...)"
)


def _since(link: dict[str, Any], where: tzinfo) -> str:
    since = link.get("since")
    return f"since {output.ago(since, where)}" if since else "(since unknown)"


async def _retried(socket: str) -> dict[str, Any] | None:
    """The link after the daemon was asked to try at once; None if it could not be asked."""
    link: dict[str, Any] | None = None
    try:
        async with rpc.connect(socket) as client:
            for _ in range(RETRY_ASKS):
                await rpc.call(client, "sync.now")  # returns after an attempt, bounded
                link = (await rpc.call(client, "status"))["link"]
                if link["state"] not in DOWN:
                    break
    except CtlError:
        pass
    return link


async def link_check(
    socket: str, status: dict[str, Any] | None, broker_answers: bool, where: tzinfo
) -> Check | None:
    """The daemon's link against doctor's own login; None without daemon or without uplink.
    Times in the store's zone `where`."""
    if status is None or status["link"]["state"] == "disabled":
        return None
    link = status["link"]
    peer = f" to {link['peer']}" if link.get("peer") else ""
    if link["state"] not in DOWN:
        return Check("link", "OK", f"{link['state']}{peer} {_since(link, where)}")
    if not broker_answers:
        return Check(
            "link",
            "WARN",
            f"{link['state']}{peer} {_since(link, where)}; doctor's own MQTT login did not "
            "succeed either",
            "fix the broker or the way to it first (see the broker lines)",
        )
    after = await _retried(socket) or link
    if after["state"] not in DOWN:
        return Check(
            "link",
            "OK",
            f"{after['state']}{peer} again once asked to retry now (it was {link['state']} "
            f"{_since(link, where)})",
        )
    return Check(
        "link",
        "FAIL",
        f"the daemon cannot reach a broker that answers: edged reports the link "
        f"{after['state']}{peer} {_since(after, where)}, also after being asked to retry now, "
        "while doctor's own MQTT login to it succeeded",
        STUCK_TODO,
    )


def _from_journal(journal: str) -> tuple[int, str | None] | None:
    """(pending, oldest pending created_at) read from the file; None if it cannot be read."""
    try:
        with readonly.JournalReader(journal) as reader:
            acked = reader.outbox().acked_upto
            pending = reader.last_seq() - acked
            oldest = reader.entry(acked + 1) if pending else None
    except JournalError:
        return None  # the journal line already says why
    return pending, oldest.created_at if oldest and oldest.damage is None else None


def outbox_check(
    status: dict[str, Any] | None, journal: str, backlog: Thresholds | None, where: tzinfo
) -> Check | None:
    """How long the oldest sale has waited for the store's ack; None on a journal-only till.

    WARN and FAIL at the thresholds that turn the daemon's outbox severity `warn` and `alarm`
    (`backlog` from `[uplink]`; None without an uplink). The oldest sale's time is shown in
    the store's zone `where`, as `edgectl status` shows it.
    """
    if status is not None:
        if status["link"]["state"] == "disabled":
            return None
        pending, oldest = status["outbox"]["pending"], status["outbox"]["oldest_created_at"]
        source = "edged reports"
    else:
        read = _from_journal(journal) if backlog else None
        if read is None:
            return None
        (pending, oldest), source = read, "the journal file holds"
    if not pending or not oldest:
        return Check("outbox", "OK", f"{source} nothing waiting for the store's ack")
    sales = f"{pending} sale{'' if pending == 1 else 's'}"
    age = output.seconds_since(oldest)
    if age < -output.CLOCK_SLACK_S:
        return Check(
            "outbox",
            "WARN",
            f"{source} {sales} not acknowledged by the store, the oldest stamped "
            f"{output.when(oldest, where)}, "
            f"{output.duration(-age)} ahead of this clock: how long it waits is unknown",
            "fix the clock first (see the clock line)",
        )
    found = (
        f"{source} {sales} not acknowledged by the store, the oldest since "
        f"{output.when(oldest, where)} "
        f"({output.duration(max(age, 0))})"
    )
    todo = (
        "the store has not acknowledged them: see the link and broker lines; `edgectl outbox` "
        "lists them, `edgectl sync` sends now and shows progress"
    )
    severity = (backlog or Thresholds()).severity(age)
    if severity is Severity.ALARM:
        return Check("outbox", "FAIL", found, todo)
    if severity is Severity.WARN:
        return Check("outbox", "WARN", found, todo)
    return Check("outbox", "OK", found)
