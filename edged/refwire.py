"""Reference data snapshots on the wire (README Contracts): topics, manifest, snapshot body.

The store publishes, retained and QoS 1, on `{prefix}/{store}/refdata/manifest` one signed
manifest and on `{prefix}/{store}/refdata/chunks/{id}/{n}` the snapshot body cut into chunks.
The body is JSON Lines (UTF-8): one `{"type": "article", ...}` or `{"type": "discount", ...}`
object per line. Sans-IO: nothing here touches a socket or a file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, Any

import msgspec

from edged.wire import Sig

REFDATA_VERSION = 1
REFDATA_DOMAIN = "edged-refdata-v1"
REFDATA_LEVEL = "refdata"  # the topic level under {prefix}/{store}; no terminal may take it
DEFAULT_CHUNK_BYTES = 256 * 1024
MAX_CHUNK_BYTES = 1024 * 1024
MAX_CHUNKS = 512  # below the terminal's queue of incoming messages (uplink.client)
MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
ID_RE = re.compile(r"^[0-9a-f]{16}$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")

Price = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Barcode = Annotated[str, msgspec.Meta(pattern=r"^[\x21-\x7e]{1,64}$")]
TaxCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,16}$")]


class Article(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="article"):
    """One article: the price is an integer in minor units of the store's currency."""

    barcode: Barcode
    description: Text
    price: Price
    tax_code: TaxCode


class Discount(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="discount"):
    """One discount rule as plain data: the UI interprets `rule`; edged keeps it as given."""

    id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    rule: dict[str, Any]


Line = Article | Discount


class Manifest(msgspec.Struct, frozen=True, omit_defaults=True):
    """store -> terminals on `{prefix}/{store}/refdata/manifest`, retained, signed by the
    collector key. Unknown fields are ignored (later publishers may say more)."""

    v: int
    store: str
    date: str  # YYYY-MM-DD: the first day the snapshot applies to
    id: str  # 16 lowercase hex digits; names the chunk topics
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_SNAPSHOT_BYTES)]
    sha256: str  # of the whole body, lowercase hex
    chunks: Annotated[int, msgspec.Meta(ge=0, le=MAX_CHUNKS)]
    chunk_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHUNK_BYTES)]
    articles: Annotated[int, msgspec.Meta(ge=0)]
    discounts: Annotated[int, msgspec.Meta(ge=0)]
    published_at: str
    sig: Sig | None = None


class RefdataTopics:
    """The refdata topics of one store."""

    def __init__(self, prefix: str, store: str) -> None:
        self.base = f"{prefix}/{store}/{REFDATA_LEVEL}"
        self.manifest = f"{self.base}/manifest"
        self.chunks = f"{self.base}/chunks/#"
        # What a terminal subscribes to: two filters, so either can be asked for again alone.
        self.filters = (self.manifest, self.chunks)

    def chunk(self, snapshot_id: str, n: int) -> str:
        return f"{self.base}/chunks/{snapshot_id}/{n}"

    def parse_chunk(self, topic: str) -> tuple[str, int] | None:
        """(snapshot id, chunk index) of a chunk topic of this store, or None."""
        head = f"{self.base}/chunks/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) != 2 or not ID_RE.match(parts[0]) or not parts[1].isdigit():
            return None
        return parts[0], int(parts[1])


def manifest_signed_bytes(m: Manifest) -> bytes:
    """The bytes a manifest's signature covers, as compact JSON."""
    return msgspec.json.encode(
        [
            REFDATA_DOMAIN,
            m.store,
            m.v,
            m.date,
            m.id,
            m.size,
            m.sha256,
            m.chunks,
            m.chunk_size,
            m.articles,
            m.discounts,
            m.published_at,
        ]
    )


def manifest_problem(m: Manifest, store: str) -> str | None:
    """What is wrong with a decoded manifest for `store` (signature aside), or None."""
    if m.v != REFDATA_VERSION:
        return f"unsupported version {m.v} (this terminal reads {REFDATA_VERSION})"
    if m.store != store:
        return f"manifest is for store {m.store!r}, not {store!r}"
    if parse_date(m.date) is None:
        return f"date {m.date!r} is not YYYY-MM-DD"
    if not ID_RE.match(m.id):
        return f"id {m.id!r} is not 16 lowercase hex digits"
    if not SHA_RE.match(m.sha256):
        return f"sha256 {m.sha256!r} is not 64 lowercase hex digits"
    expected = -(-m.size // m.chunk_size)
    if m.chunks != expected:
        return f"{m.chunks} chunks, but size {m.size} / chunk_size {m.chunk_size} needs {expected}"
    return None


def parse_date(text: str) -> dt.date | None:
    """A YYYY-MM-DD date, or None."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def choose(dates: Iterable[str], wanted: str) -> str | None:
    """The snapshot date to use on `wanted`: the nearest on or before it, else the nearest
    after it (the rule stores rely on); None when there is none. Dates are YYYY-MM-DD."""
    held = sorted(set(dates))
    older = [d for d in held if d <= wanted]
    if older:
        return older[-1]
    return held[0] if held else None


def article_key(barcode: str) -> str:
    """The lookup key: a numeric code of 8 to 14 digits as GTIN-14 (so UPC-A 036000291452 and
    EAN-13 0036000291452 are one article), anything else as it is."""
    if barcode.isdigit() and 8 <= len(barcode) <= 14:
        return barcode.zfill(14)
    return barcode


_line_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(Line)


def encode_body(lines: Sequence[Line]) -> bytes:
    """The snapshot body: one JSON object per line, each line ending in a newline."""
    out = bytearray()
    for line in lines:
        out += _line_encoder.encode(line)
        out += b"\n"
    return bytes(out)


class BodyError(ValueError):
    """A snapshot body line that is not an article or a discount; names the line."""


def decode_lines(chunks: Iterable[bytes]) -> Iterator[Line]:
    """Decode a body given in pieces cut anywhere; BodyError naming the line on any problem."""
    rest = b""
    number = 0
    for piece in chunks:
        rest += piece
        *whole, rest = rest.split(b"\n")
        for raw in whole:
            number += 1
            yield _decode_line(raw, number)
        if len(rest) > MAX_LINE_BYTES:
            raise BodyError(f"line {number + 1}: longer than {MAX_LINE_BYTES} bytes")
    if rest:
        raise BodyError(f"line {number + 1}: the body does not end with a newline")


def _decode_line(raw: bytes, number: int) -> Line:
    try:
        return _line_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BodyError(f"line {number}: {exc}") from None
