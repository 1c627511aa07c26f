"""`edged collector refdata publish FILE --store S --date D`: one signed snapshot, retained.

The chunks go first, then the manifest that names them (so a terminal that sees the manifest
finds its chunks), then the previous snapshot's chunks are cleared from the broker (an empty
retained message each). What was published last is remembered beside the collector's
database (`refdata-STORE.json`), so the next publish knows which chunks to clear.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

import msgspec
import structlog

from edged.clock import utc_now_iso
from edged.collector.dburl import configured
from edged.collector.link import BrokerLink, LinkSettings
from edged.collector.refsource import read_source
from edged.collector.service import derive_client_id
from edged.config import IDENT_PATTERN, CollectorConfig, read_password
from edged.errors import EdgedError
from edged.keys import collector_key_path, load_or_create
from edged.refwire import (
    DEFAULT_CHUNK_BYTES,
    MAX_CHUNK_BYTES,
    MAX_CHUNKS,
    REFDATA_VERSION,
    Article,
    Manifest,
    RefdataTopics,
    encode_body,
    manifest_signed_bytes,
    parse_date,
)

log = structlog.get_logger(__name__)


class PublishError(EdgedError):
    """The snapshot cannot be published as asked; says why."""


def _state_path(cfg: CollectorConfig, store: str) -> Path:
    return Path(configured(cfg.collector).local_files()).parent / f"refdata-{store}.json"


async def publish_refdata(
    cfg: CollectorConfig, source: Path, *, store: str, date: str, chunk_bytes: int | None = None
) -> dict[str, Any]:
    """Check `source`, publish it as the snapshot for `date`; returns the manifest (no sig)."""
    if not re.match(IDENT_PATTERN, store):
        raise PublishError(f"--store {store!r}: must be a store id ([A-Za-z0-9_-], 1 to 32)")
    if parse_date(date) is None:
        raise PublishError(f"--date {date!r}: must be a date YYYY-MM-DD")
    size = chunk_bytes or DEFAULT_CHUNK_BYTES
    if not 1 <= size <= MAX_CHUNK_BYTES:
        raise PublishError(f"chunk size {size}: must be 1 to {MAX_CHUNK_BYTES} bytes")
    lines = read_source(source)
    body = encode_body(lines)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    if len(chunks) > MAX_CHUNKS:
        raise PublishError(
            f"{len(body)} bytes make {len(chunks)} chunks of {size}; at most {MAX_CHUNKS}: "
            "use larger chunks (the broker's message_size_limit must allow them)"
        )
    articles = sum(1 for line in lines if isinstance(line, Article))
    signer = load_or_create(collector_key_path(configured(cfg.collector).local_files()))
    manifest = Manifest(
        v=REFDATA_VERSION,
        store=store,
        date=date,
        id=secrets.token_hex(8),
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        chunks=len(chunks),
        chunk_size=size,
        articles=articles,
        discounts=len(lines) - articles,
        published_at=utc_now_iso(),
    )
    signed = msgspec.structs.replace(manifest, sig=signer.sign(manifest_signed_bytes(manifest)))
    topics = RefdataTopics(cfg.uplink.topic_prefix, store)
    state = _state_path(cfg, store)
    previous = _previous(state)
    settings = LinkSettings(
        uplink=cfg.uplink,
        client_id=f"{cfg.uplink.client_id or derive_client_id(cfg)}-refdata",
        password=read_password(cfg.uplink, cfg.source),
        shared_group=None,
        source=cfg.source,
    )
    async with BrokerLink(settings) as link:
        for n, chunk in enumerate(chunks):
            await link.publish(topics.chunk(manifest.id, n), chunk, retain=True)
        await link.publish(topics.manifest, msgspec.json.encode(signed), retain=True)
        if previous is not None and previous.id != manifest.id:
            for n in range(previous.chunks):
                await link.publish(topics.chunk(previous.id, n), b"", retain=True)
    state.write_bytes(msgspec.json.encode(signed))
    log.info(
        "refdata_published",
        store=store,
        date=date,
        id=manifest.id,
        size=manifest.size,
        chunks=manifest.chunks,
        articles=manifest.articles,
        discounts=manifest.discounts,
        key=signer.public_hex,
    )
    return {**msgspec.to_builtins(manifest), "key": signer.public_hex}


def _previous(state: Path) -> Manifest | None:
    try:
        return msgspec.json.decode(state.read_bytes(), type=Manifest)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
