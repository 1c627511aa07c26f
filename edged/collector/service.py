"""The store collector: receive terminals' batches, store them, acknowledge after the commit.

Loop per connection: the messages that arrived while the store was busy (a group) are stored
in one transaction, then each is PUBACKed and one cumulative ack per terminal published. Nothing is
acknowledged, to the broker or to a terminal, before the commit; a collector killed at any
point gets the un-PUBACKed messages again from its persistent session, and whatever it had
already stored comes back as duplicates that the store absorbs and re-acknowledges.

A message that cannot be stored (malformed, out of range, oversized, or refused by the
database) is quarantined in the same transaction and settled with its group: it is never
redelivered, never acknowledged to its terminal, and never holds up anybody else. A database
file deleted or replaced under the collector ends it (CollectorDbChangedError) before any ack.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import msgspec
import structlog

from edged.clock import utc_now_iso
from edged.collector.dburl import DbTarget, configured
from edged.collector.link import BrokerLink, Delivery, LinkError, LinkSettings
from edged.collector.rebuild import ResendPlan
from edged.collector.report import TerminalReport
from edged.collector.resend import ResendTracker
from edged.collector.schema import CollectorDbChangedError, CollectorStoreError
from edged.collector.store import (
    Batch,
    CollectorStore,
    Message,
    Progress,
    Quarantine,
    TerminalKey,
)
from edged.config import CollectorConfig, read_password
from edged.errors import ConfigError
from edged.keys import collector_key_path, load_or_create
from edged.signing import Signer, ack_signed_bytes, resend_signed_bytes
from edged.supervise import Fault, RestartPolicy, Supervisor, in_own_task, unwrap
from edged.wire import (
    WIRE_VERSION,
    Ack,
    ResendAnswer,
    ResendRequest,
    Topics,
    decode_resend_answer,
    decode_tx,
    encode,
    parse_tx_topic,
    resend_answer_filter,
    tx_filter,
)

log = structlog.get_logger(__name__)

GROUP_MAX_MESSAGES = 200  # messages stored in one transaction ...
GROUP_MAX_BYTES = 16 * 1024 * 1024  # ... and their payloads' bytes: bounded memory and commits
ACKS_REPUBLISHED_AT_ONCE = 100  # retained acks in flight while republishing them at a connect
MAX_TX_PAYLOAD_BYTES = 16 * 1024 * 1024
# The store thread gives up Python's lock for every statement and must win it back from the
# event loop, which verifies entries in pure Python meanwhile: CPython's default is 5 ms a
# wait, for each of a group's ~30 statements to PostgreSQL. At 0.5 ms the store thread's time
# per sale in a drain fell by about 5 % (scripts/bench drain).
GIL_SWITCH_S = 0.0005
CLIENT_ID_HOST_CHARS = 24
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_-]")

T = TypeVar("T")


def derive_client_id(cfg: CollectorConfig) -> str:
    """A client id stable across restarts: host plus a digest of the config file and the db."""
    host = _NOT_IDENT.sub("-", socket.gethostname())[:CLIENT_ID_HOST_CHARS] or "host"
    digest = hashlib.sha256(f"{cfg.source}|{cfg.collector.db}".encode()).hexdigest()[:8]
    return f"edged-collector-{host}-{digest}"


async def run_collector(cfg: CollectorConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run the collector until cancelled; `ready` is set once it is first subscribed."""
    client_id = cfg.uplink.client_id or derive_client_id(cfg)
    db = StoreThread(
        configured(cfg.collector),
        received_by=client_id,
        trust_on_first_use=cfg.collector.trust_on_first_use,
    )
    try:
        await db.open()
        signer = load_or_create(collector_key_path(db.target.local_files()))  # signs every ack
        log.info("collector_key", key=signer.public_hex)
        await _supervise(cfg, client_id, db, signer, ready)
    except CollectorDbChangedError as exc:
        log.critical("collector_db_changed", db=db.path, error=str(exc))
        raise
    finally:
        await db.close()


async def _supervise(
    cfg: CollectorConfig,
    client_id: str,
    db: StoreThread,
    signer: Signer,
    ready: asyncio.Event | None,
) -> NoReturn:
    """Connect, subscribe and serve; reconnect with backoff after any failure, forever."""
    up = cfg.uplink
    topic_filter = tx_filter(up.topic_prefix)
    resends = ResendTracker()

    async def attempt() -> None:
        settings = LinkSettings(
            uplink=up,
            client_id=client_id,
            password=read_password(up, cfg.source),
            shared_group=cfg.collector.group,
            source=cfg.source,
        )
        async with BrokerLink(settings) as link:
            if cfg.collector.group is not None and link.shared_group is None:
                log.warning(
                    "collector_shared_unavailable",
                    broker=f"{up.host}:{up.effective_port}",
                    shared_group=cfg.collector.group,
                    hint="the broker offers no shared subscriptions (CONNACK): subscribed "
                    "alone; run one collector per broker",
                )
            await link.subscribe(topic_filter)
            await link.subscribe(resend_answer_filter(up.topic_prefix))
            log.info(
                "collector_subscribed",
                broker=f"{up.host}:{up.effective_port}",
                client_id=client_id,
                filter=topic_filter,
                shared_group=link.shared_group,
                after_failures=supervisor.backoff.failures,
            )
            await _republish_acks(link, db, signer, up.topic_prefix)
            supervisor.healthy()
            if ready is not None:
                ready.set()
            await _serve(link, db, signer, up.topic_prefix, resends)

    supervisor = Supervisor(
        "collector",
        attempt,
        policy=RestartPolicy(min_s=up.reconnect_min_s, max_s=up.reconnect_max_s),
        expected=_expected,
        # A TLS file that cannot be read, a database deleted or replaced: a retry cannot help.
        fatal=(ConfigError, CollectorDbChangedError),
        still_down_event="collector_link_still_down",
    )
    await supervisor.run()


def _expected(exc: BaseException) -> Fault | None:
    """Link failures are retried quietly; store failures are an ERROR every time."""
    if isinstance(exc, CollectorStoreError):
        # Nothing was PUBACKed: the broker redelivers the messages after the reconnect.
        return Fault("collector_store_failed", str(exc), quiet=False)
    if isinstance(exc, LinkError):
        return Fault("collector_link_down", str(exc))
    return None  # a bug must not end the collector: logged with its traceback, reconnect


async def _serve(
    link: BrokerLink, db: StoreThread, signer: Signer, prefix: str, resends: ResendTracker
) -> NoReturn:
    """Receive, store, settle and acknowledge, group by group, until the link fails; when
    the store is idle, ask terminals to resend what it lacks if that is due.

    Two groups overlap: while the store thread writes one, each message that arrives is
    decoded and verified on the event loop (decode_tx, check_entry: pure work) and joins the
    next group, so the database's own time and Python's are spent side by side. That group
    goes to the store as soon as the commit before it is settled: groups are stored one after
    the other, and each is settled and acknowledged only after its own commit.
    """
    incoming = asyncio.ensure_future(link.next())  # never cancelled mid-receive: no loss
    storing: _Stored | None = None
    group: list[Delivery] = []  # received, verified, not stored yet
    items: list[Batch | Quarantine] = []
    try:
        while True:
            if storing is not None and storing.task.done():
                await _settle(storing, link, db, signer=signer, prefix=prefix, resends=resends)
                storing = None
            if storing is None and group:
                log.debug("tx_group_received", messages=len(group))
                storing = _Stored(group, asyncio.ensure_future(db.store_batches(items)))
                group, items = [], []
            if incoming.done() and _room(group):
                group.append(incoming.result())
                incoming = asyncio.ensure_future(link.next())
                items += _prepare(prefix, group[-1])
                continue
            if storing is None:
                await _ask_resends(link, db, signer, prefix, resends)
            waits: set[asyncio.Future[Any]] = {incoming} if _room(group) else set()
            if storing is not None:
                waits.add(storing.task)
            timeout = resends.wait_s(time.monotonic()) if storing is None else None
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        incoming.cancel()
        if storing is not None:  # the thread finishes the commit; nothing is settled
            storing.task.cancel()
            if storing.task.done() and not storing.task.cancelled():
                storing.task.exception()  # a link lost first says why this ends, not the store


def _room(group: list[Delivery]) -> bool:
    """True if one more message may join this group's transaction."""
    return len(group) < GROUP_MAX_MESSAGES and sum(len(d.payload) for d in group) < GROUP_MAX_BYTES


@dataclass(slots=True)
class _Stored:
    """A group on its way into the database: settled and acknowledged once `task` is done."""

    group: list[Delivery]
    task: asyncio.Future[dict[TerminalKey, Progress]]


def _prepare(prefix: str, delivery: Delivery) -> list[Batch | Quarantine]:
    """A tx message decoded and its batch's entries verified; nothing for a resend answer
    (recorded when its group is settled)."""
    if delivery.topic.endswith("/resend_answer"):
        return []
    item = parse_delivery(prefix, delivery)
    return [item.verified() if isinstance(item, Batch) else item]


async def _settle(
    stored: _Stored,
    link: BrokerLink,
    db: StoreThread,
    *,
    signer: Signer,
    prefix: str,
    resends: ResendTracker,
) -> None:
    """After a group's commit: its resend answers, PUBACKs, acks, then any resend due."""
    acks = await stored.task  # a failed store raises: nothing settled, the broker redelivers
    answers = [a for d in stored.group if (a := _parse_answer(prefix, d)) is not None]
    if answers:
        await db.record_answers(answers)
    for delivery in stored.group:  # only after the commit
        link.settle(delivery)
    await _publish_acks(link, prefix, signer, acks)
    now = time.monotonic()
    for key, done in acks.items():
        resends.saw(key, done.gap, now)
    await _ask_resends(link, db, signer, prefix, resends)


async def _republish_acks(link: BrokerLink, db: StoreThread, signer: Signer, prefix: str) -> None:
    """Publish every terminal's current ack again, retained: a broker restarted without
    persistence forgot them, and a replaced till adopts only what its broker retained."""
    acks = await db.current_acks()
    keys = list(acks)
    for start in range(0, len(keys), ACKS_REPUBLISHED_AT_ONCE):
        chunk = {key: acks[key] for key in keys[start : start + ACKS_REPUBLISHED_AT_ONCE]}
        await _publish_acks(link, prefix, signer, chunk)
    log.info("acks_republished", terminals=len(keys))


async def _ask_resends(
    link: BrokerLink, db: StoreThread, signer: Signer, prefix: str, resends: ResendTracker
) -> None:
    """Publish the resend requests that are due (QoS 1, not retained), signed like acks."""
    for key, gap in resends.due(time.monotonic()):
        plan = await db.plan_resend(key, gap)
        if plan is None:
            resends.settled(key)  # the terminal purged all of it: a permanent gap, reported
            continue
        await _publish_resend(link, signer, prefix, key, plan)
        if resends.unanswered(key):
            log.error(
                "resend_giving_up",
                store=key[0],
                terminal=key[1],
                seq_from=plan.from_seq,
                seq_to=plan.upto,
                requests=resends.attempts_max,
                hint="the terminal did not fill the gap; it stays in `edged collector status`",
            )


async def _publish_resend(
    link: BrokerLink, signer: Signer, prefix: str, key: TerminalKey, plan: ResendPlan
) -> None:
    request = ResendRequest(v=WIRE_VERSION, from_=plan.from_seq, upto=plan.upto, reason=plan.reason)
    sig = signer.sign(resend_signed_bytes(*key, request))
    request = msgspec.structs.replace(request, sig=sig)
    topic = Topics(prefix, *key).resend
    log.warning(
        "resend_requested",
        store=key[0],
        terminal=key[1],
        seq_from=plan.from_seq,
        seq_to=plan.upto,
        reason=plan.reason,
    )
    await in_own_task(link.publish(topic, encode(request)), "collector-resend")


def _parse_answer(prefix: str, delivery: Delivery) -> tuple[TerminalKey, ResendAnswer] | None:
    """A terminal's answer to a resend request; a bad one is logged and dropped."""
    key = parse_tx_topic(prefix, delivery.topic, "resend_answer")
    if key is None:
        return None
    try:
        return key, decode_resend_answer(delivery.payload)
    except msgspec.MsgspecError as exc:
        log.warning("resend_answer_rejected", topic=delivery.topic, problem=str(exc))
        return None


async def _publish_acks(
    link: BrokerLink, prefix: str, signer: Signer, acks: dict[TerminalKey, Progress]
) -> None:
    # In a task of its own: a failed group leaves no cancellation behind for the close (3.11.2).
    await in_own_task(_publish_ack_group(link, prefix, signer, acks), "collector-acks")


def signed_ack(signer: Signer, store_id: str, terminal_id: str, ack: Ack) -> Ack:
    """`ack` with the collector's signature over it (edged.signing.ack_signed_bytes)."""
    sig = signer.sign(ack_signed_bytes(store_id, terminal_id, ack))
    return msgspec.structs.replace(ack, sig=sig)


async def _publish_ack_group(
    link: BrokerLink, prefix: str, signer: Signer, acks: dict[TerminalKey, Progress]
) -> None:
    """One ack per terminal, retained: a terminal learns the store's view when it subscribes."""
    at = utc_now_iso()
    try:
        async with asyncio.TaskGroup() as tg:
            for (store_id, terminal_id), done in acks.items():
                topic = Topics(prefix, store_id, terminal_id).ack
                if done.plain:  # an edged before signatures decodes only `{v, upto}`
                    ack = Ack(v=WIRE_VERSION, upto=done.upto)
                else:
                    ack = Ack(
                        v=WIRE_VERSION,
                        upto=done.upto,
                        at=at,
                        last_seq=done.last_seq,
                        last_hash=done.last_hash,
                    )
                    ack = signed_ack(signer, store_id, terminal_id, ack)
                publish = link.publish(topic, encode(ack), retain=True)
                tg.create_task(publish, name=f"ack {store_id}/{terminal_id}")
    except ExceptionGroup as group:
        raise unwrap(group, prefer=(LinkError,)) from None


def parse_delivery(prefix: str, delivery: Delivery) -> Batch | Quarantine:
    """The batch a tx message carries, or the reason it must be quarantined."""
    message = Message(delivery.topic, delivery.payload)
    where = parse_tx_topic(prefix, delivery.topic)
    if where is None:
        return Quarantine(message, "", "", f"topic is not {prefix}/STORE/TERMINAL/tx")
    store_id, terminal_id = where
    if len(delivery.payload) > MAX_TX_PAYLOAD_BYTES:
        problem = f"payload is {len(delivery.payload)} bytes, over {MAX_TX_PAYLOAD_BYTES}"
        return Quarantine(message, store_id, terminal_id, problem)
    try:
        batch = decode_tx(delivery.payload)
    except msgspec.MsgspecError as exc:
        return Quarantine(message, store_id, terminal_id, str(exc))
    if (batch.store, batch.terminal) != where:
        problem = (
            f"payload says store {batch.store!r} terminal {batch.terminal!r}, "
            f"topic says store {store_id!r} terminal {terminal_id!r}"
        )
        return Quarantine(message, store_id, terminal_id, problem)
    return Batch(store_id, terminal_id, batch.entries, message, batch.sig)


class StoreThread:
    """The collector store on its own thread, so a commit (SQLite's fsync, a round trip to
    PostgreSQL) never blocks the event loop."""

    def __init__(
        self, target: DbTarget, *, received_by: str, trust_on_first_use: bool = True
    ) -> None:
        self.target = target
        self.path = target.path
        self.received_by = received_by
        self._trust_on_first_use = trust_on_first_use
        self._store: CollectorStore | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collector-db")

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _open(self) -> None:
        self._store = CollectorStore.open(
            self.target, received_by=self.received_by, trust_on_first_use=self._trust_on_first_use
        )

    def _require(self) -> CollectorStore:
        if self._store is None:
            raise CollectorStoreError(f"collector db {self.path} is not open")
        return self._store

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    async def open(self) -> None:
        await self._call(self._open)

    async def store_batches(
        self, items: Sequence[Batch | Quarantine]
    ) -> dict[TerminalKey, Progress]:
        """Store in one transaction; the commit completes even if the caller is cancelled."""
        return await self._call(lambda: self._require().store_batches(items))

    async def plan_resend(self, key: TerminalKey, gap: tuple[int, int]) -> ResendPlan | None:
        return await self._call(lambda: self._require().plan_resend(key, gap))

    async def record_answers(self, answers: Sequence[tuple[TerminalKey, ResendAnswer]]) -> None:
        await self._call(lambda: self._require().record_answers(answers))

    async def current_acks(self) -> dict[TerminalKey, Progress]:
        return await self._call(lambda: self._require().current_acks())

    async def terminal_report(self) -> list[TerminalReport]:
        return await self._call(lambda: self._require().terminal_report())

    async def close(self) -> None:
        """Close after any call still running on the thread has finished."""
        try:
            await self._call(self._close)
        finally:
            self._executor.shutdown(wait=False)
