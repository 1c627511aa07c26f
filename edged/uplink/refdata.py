"""Receiving reference data snapshots: the signed manifest, its chunks, the build.

A manifest is acted on only when signed by the collector key this terminal pinned (the rule
acks follow: edged.uplink.ackgate); with no key pinned yet it waits, and is tried again on
every tick, so the first signed ack's pin lets it through. Chunks are staged on disk as they
come (retained, so a terminal that connects later gets them); once all are there the
snapshot is verified and built in a worker thread, off the connection's reader. A snapshot
whose chunks do not all come within `chunk_wait_s` of its manifest, or that fails a check,
is rejected: logged with what was wrong, and the snapshot in use stays. `refresh` (sync.now)
asks the broker for the retained manifest, and for the chunks of one not yet held, again: a
chunk lost on the way comes back that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec
import structlog

from edged.clock import utc_now_iso
from edged.errors import KeyFileError
from edged.journal.refdata import RefdataStore, Snapshot, SnapshotRejected
from edged.keys import read_pin
from edged.refwire import (
    MAX_CHUNK_BYTES,
    Manifest,
    RefdataTopics,
    manifest_problem,
    manifest_signed_bytes,
)
from edged.signing import verify
from edged.uplink.client import Incoming

log = structlog.get_logger(__name__)

TICK_S = 1.0  # how often a waiting manifest is looked at again (pin, deadline)

OnSnapshot = Callable[[Snapshot], Awaitable[None]]
# Subscribes to the topic filters again, so the broker sends their retained messages anew.
Refetch = Callable[[Sequence[str]], Awaitable[None]]


class RefdataSync:
    """Takes the store's refdata messages off the link and builds snapshots from them."""

    def __init__(
        self,
        store: RefdataStore,
        topics: RefdataTopics,
        *,
        store_id: str,
        pin_path: Path,
        chunk_wait_s: float,
        on_snapshot: OnSnapshot,
    ) -> None:
        self._store = store
        self.topics = topics
        self._store_id = store_id
        self._pin_path = pin_path
        self._chunk_wait_s = chunk_wait_s
        self._on_snapshot = on_snapshot
        self._manifest: Manifest | None = None  # the latest one heard, checked or not
        self._wanted: Manifest | None = None  # signed, well-formed, not yet built
        self._held: str | None = None  # a snapshot built already: its chunks are not staged
        self._building: Manifest | None = None  # its snapshot is being built in a thread
        self._deadline = 0.0
        self._wake = asyncio.Event()
        self._said: set[tuple[str, str]] = set()  # (manifest id, kind) already logged at ERROR
        self.last_refusal: dict[str, Any] | None = self._load_refusal()
        self.refetch: Refetch | None = None  # set by the uplink that delivers our messages

    def _load_refusal(self) -> dict[str, Any] | None:
        text = self._store.state("last_refusal")
        return None if text is None else dict(msgspec.json.decode(text))

    async def handle(self, msg: Incoming) -> bool:
        """Act on one message of the refdata topics; False if the topic is not one of them."""
        if msg.topic == self.topics.manifest:
            if msg.payload:  # an empty retained payload: the store withdrew its manifest
                await self._on_manifest(msg.payload)
            return True
        chunk = self.topics.parse_chunk(msg.topic)
        if chunk is None:
            return False
        snapshot_id, n = chunk
        wanted = self._wanted
        if not msg.payload or len(msg.payload) > MAX_CHUNK_BYTES:
            return True
        if wanted is not None and (snapshot_id != wanted.id or n >= wanted.chunks):
            return True  # a chunk of another snapshot, still retained at the broker
        building = self._building
        if snapshot_id == self._held or (building is not None and snapshot_id == building.id):
            return True
        await asyncio.to_thread(self._store.stage, snapshot_id, n, msg.payload)
        if wanted is not None:
            self._wake.set()
        return True

    async def refresh(self) -> None:
        """Look at the latest manifest again (sync.now): its signature, its chunks; and ask
        the broker for the retained ones again, in case one was lost on the way."""
        manifest = self._manifest
        if manifest is not None:
            self._said.clear()
            await self._consider(manifest)
        if self.refetch is None:
            return
        # Chunks only for a manifest whose snapshot is neither held nor being built: a
        # catalog is large (and with no manifest yet, none names the chunks to fetch).
        chunks = manifest is not None and manifest.id != self._held and manifest != self._building
        await self.refetch(self.topics.filters if chunks else (self.topics.manifest,))

    @property
    def waiting_for(self) -> dict[str, Any] | None:
        """The snapshot being assembled: {date, id, chunks, staged}, or None."""
        wanted = self._wanted
        if wanted is None:
            return None
        staged = len(self._store.staged(wanted.id))
        return {"date": wanted.date, "id": wanted.id, "chunks": wanted.chunks, "staged": staged}

    async def _on_manifest(self, payload: bytes) -> None:
        try:
            manifest = msgspec.json.decode(payload, type=Manifest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._refuse(None, "malformed", f"malformed manifest: {exc}")
            return
        self._manifest = manifest
        await self._consider(manifest)

    async def _consider(self, manifest: Manifest) -> None:
        problem = manifest_problem(manifest, self._store_id)
        if problem is not None:
            await self._refuse(manifest, "malformed", problem)
            return
        kind, problem = self._signature_problem(manifest)
        if problem is not None:
            await self._refuse(manifest, kind, problem, final=kind != "unpinned")
            return
        if manifest == self._building:  # sync.now during the build: it is on its way
            log.debug("refdata_snapshot_building", date=manifest.date, id=manifest.id)
            return
        if self._store.holds(manifest):
            log.debug("refdata_snapshot_held", date=manifest.date, id=manifest.id)
            self._wanted, self._held = None, manifest.id
            await asyncio.to_thread(self._store.drop_staged, None)
            return
        if self._wanted is None or self._wanted.id != manifest.id:
            await asyncio.to_thread(self._store.drop_staged, manifest.id)
        self._wanted, self._held = manifest, None
        self._deadline = time.monotonic() + self._chunk_wait_s
        log.info(
            "refdata_manifest_accepted",
            date=manifest.date,
            id=manifest.id,
            size=manifest.size,
            chunks=manifest.chunks,
            articles=manifest.articles,
        )
        self._wake.set()

    def _signature_problem(self, manifest: Manifest) -> tuple[str, str | None]:
        try:
            pinned = read_pin(self._pin_path)
        except KeyFileError as exc:
            return "pin_unreadable", str(exc)
        sig = manifest.sig
        if sig is None:
            return "unsigned", "the manifest is not signed"
        if pinned is None:
            return "unpinned", (
                f"manifest signed by key {sig.key}, but no collector key is pinned yet (the "
                "collector's first ack pins it, or edgectl keys pin-collector KEY)"
            )
        if sig.key != pinned:
            return "wrong_key", (
                f"manifest signed by key {sig.key}, not by the pinned collector key {pinned}"
            )
        problem = verify(sig, manifest_signed_bytes(manifest))
        return ("bad_signature", problem) if problem else ("", None)

    async def run(self) -> NoReturn:
        """Build each wanted snapshot once its chunks are in; give up on it at its deadline."""
        while True:
            self._wake.clear()
            await self._step()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._wake.wait()

    async def _step(self) -> None:
        manifest = self._manifest
        if self._wanted is None and manifest is not None and self._waiting_for_pin(manifest):
            await self._consider(manifest)
        wanted = self._wanted
        if wanted is None:
            return
        staged = self._store.staged(wanted.id)
        if len(staged) < wanted.chunks:
            if time.monotonic() < self._deadline:
                return
            missing = wanted.chunks - len(staged)
            self._wanted = None
            await asyncio.to_thread(self._store.drop_staged, None)
            await self._refuse(
                wanted,
                "incomplete",
                f"{missing} of {wanted.chunks} chunks did not come within "
                f"{self._chunk_wait_s:g} s of the manifest",
            )
            return
        self._wanted = None
        try:
            snapshot = await self._build(wanted)
        except SnapshotRejected as exc:
            await asyncio.to_thread(self._store.drop_staged, None)
            await self._refuse(wanted, exc.kind, exc.problem)
            return
        self._held = wanted.id
        log.info(
            "refdata_snapshot_stored",
            date=snapshot.date,
            id=snapshot.snapshot_id,
            articles=snapshot.articles,
            discounts=snapshot.discounts,
        )
        await self._on_snapshot(snapshot)

    async def _build(self, manifest: Manifest) -> Snapshot:
        """Build in a worker thread; meanwhile sync.now does not make the manifest wanted again
        (the build takes its chunks: it would be refused as incomplete later)."""
        self._building = manifest
        try:
            return await asyncio.to_thread(self._store.build, manifest)
        finally:
            self._building = None

    def _waiting_for_pin(self, manifest: Manifest) -> bool:
        refusal = self.last_refusal
        return (
            refusal is not None
            and refusal.get("kind") == "unpinned"
            and refusal.get("id") == manifest.id
        )

    async def _refuse(
        self, manifest: Manifest | None, kind: str, problem: str, *, final: bool = True
    ) -> None:
        """Log why (ERROR once per snapshot and kind, then DEBUG) and remember it for status."""
        snapshot_id = manifest.id if manifest is not None else None
        date = manifest.date if manifest is not None else None
        key = (snapshot_id or "", kind)
        level = log.debug if key in self._said else (log.error if final else log.warning)
        self._said.add(key)
        event = "refdata_snapshot_rejected" if final else "refdata_manifest_waiting"
        level(event, kind=kind, problem=problem, date=date, id=snapshot_id)
        refusal = {"at": utc_now_iso(), "kind": kind, "problem": problem, "date": date}
        refusal["id"] = snapshot_id
        if self.last_refusal is not None and {**self.last_refusal, "at": ""} == {
            **refusal,
            "at": "",
        }:
            return
        self.last_refusal = refusal
        await asyncio.to_thread(
            self._store.set_state, "last_refusal", msgspec.json.encode(refusal).decode()
        )
