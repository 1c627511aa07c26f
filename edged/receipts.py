"""Print documents and receipt layouts, shared by the daemon (printing) and edgectl (rendering).

Both must build exactly the same document for a journaled sale and the same layout from the
config, or `edgectl receipt` would show support something other than what the till printed.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any, Protocol

import msgspec

from edged.config import PrinterSection
from edged.devices.printer.layout import ReceiptLayout
from edged.localtime import local_text


class JournaledSale(Protocol):
    """What a journal entry offers (edged.journal.StoredEntry), without importing the journal."""

    @property
    def seq(self) -> int: ...
    @property
    def receipt_no(self) -> str: ...
    @property
    def created_at(self) -> str: ...
    @property
    def hash(self) -> bytes: ...
    @property
    def sale_json(self) -> bytes: ...


def sale_document(
    store_id: str, terminal_id: str, entry: JournaledSale, where: tzinfo
) -> dict[str, Any]:
    """The `{"kind": "sale", ...}` document of a journaled sale (edged.devices.printer.receipt),
    its time printed in the store's zone `where` (`[terminal] timezone`)."""
    return {
        "kind": "sale",
        "store_id": store_id,
        "terminal_id": terminal_id,
        "seq": entry.seq,
        "receipt_no": entry.receipt_no,
        "created_at": entry.created_at,
        "local_time": local_text(entry.created_at, where),
        "hash": entry.hash.hex(),
        "sale": msgspec.json.decode(entry.sale_json),
    }


def receipt_layout(cfg: PrinterSection) -> ReceiptLayout:
    """The layout `[devices.printer]` asks for; ValueError says what cannot be printed."""
    return ReceiptLayout(
        profile=cfg.profile,
        columns=cfg.columns,
        codepage=cfg.codepage,
        header=tuple(cfg.header),
        footer=tuple(cfg.footer),
        code=cfg.code,
        show_hash=cfg.print_hash,
    )
