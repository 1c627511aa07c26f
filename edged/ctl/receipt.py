"""`edgectl receipt SEQ`: a journaled sale's receipt as the printer prints it, from the file.

The bytes are built exactly as the daemon builds them for `printer.print {sale_id}` (same
document, same layout from the config), then run through the ESC/POS simulator's parser and
print head, so support sees the paper, not a re-creation of it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edged import files
from edged.config import Config
from edged.ctl import output, paths
from edged.ctl.errors import EXIT_OK, CtlError
from edged.devices.printer.layout import ReceiptLayout, printer_facts
from edged.devices.printer.receipt import DocumentError, build_receipt
from edged.errors import JournalError
from edged.journal import StoredEntry
from edged.journal.readonly import JournalReader
from edged.receipts import receipt_layout, sale_document
from edged.sim import escpos
from edged.sim.render import DEFAULT_WIDTH_DOTS, FONTS, Layout, Page


def _layout(cfg: Config | None) -> tuple[ReceiptLayout, int]:
    """The configured layout and the paper width in dots the printer prints it on."""
    printer = cfg.devices.printer if cfg else None
    if printer is None:
        output.warn("no [devices.printer] in the config: rendering with the default layout")
    try:
        layout = receipt_layout(printer) if printer else ReceiptLayout()
        facts = printer_facts(layout.profile, layout.codepage, layout.columns)
    except ValueError as exc:
        raise CtlError(f"[devices.printer]: {exc}") from None
    if printer is not None and printer.driver == "sim":
        return layout, DEFAULT_WIDTH_DOTS  # the simulated printer's paper
    # A profile that does not know its paper still prints its columns of font A.
    return layout, max(facts.width_dots, facts.columns * FONTS[0][0])


def _entry(journal_path: str, seq: int) -> tuple[str, str, StoredEntry]:
    try:
        with JournalReader(journal_path) as journal:
            store, terminal = journal.identity()
            entry = journal.entry(seq)
            anchor, last = journal.outbox().anchor_seq, journal.last_seq()
    except JournalError as exc:
        raise CtlError(str(exc)) from None
    if entry is None:
        if 0 < seq <= anchor:
            raise CtlError(
                f"seq {seq} was purged after the store acknowledged it (this journal keeps "
                f"seq {anchor + 1}..{last}); the store's collector has it"
            )
        raise CtlError(f"no entry with seq {seq} in {journal_path} (last seq is {last})")
    if entry.damage is not None:
        raise CtlError(
            f"seq {seq} is damaged in {journal_path} ({entry.damage}): it cannot be printed; "
            "`edgectl journal verify` lists every damaged seq"
        )
    return store, terminal, entry


def render(data: bytes, width_dots: int) -> Page:
    """What comes out of a printer fed `data`: the pages between cuts, as one strip."""
    head = Layout(width_dots)
    ops = escpos.EscPosParser().feed(data)
    pages = [page for op in ops if (page := head.apply(op)) is not None]
    if (rest := head.tear_off()) is not None:  # a layout with cut = "none"
        pages.append(rest)
    return Page(width_dots, [row for page in pages for row in page.rows])


def run(args: argparse.Namespace) -> int:
    if args.png is None and not args.text:
        raise CtlError("say what to make: --png FILE and/or --text")
    cfg = paths.config(args)
    store, terminal, entry = _entry(paths.journal_path(args), args.seq)
    layout, width = _layout(cfg)
    try:
        document = sale_document(store, terminal, entry, paths.zone(args))
        data = build_receipt(document, layout, copy=False)
    except DocumentError as exc:
        raise CtlError(f"seq {entry.seq} cannot be printed: {exc}") from None
    page = render(data, width)
    if args.png is not None:
        try:
            with files.open_for_writing(Path(args.png)) as fh:
                fh.write(page.png())
        except OSError as exc:
            raise CtlError(f"cannot write {args.png}: {exc.strerror or exc}") from None
    text = page.text()
    if args.json:
        output.emit_json(
            {
                "seq": entry.seq,
                "receipt_no": entry.receipt_no,
                "png": args.png,
                "text": text if args.text else None,
            }
        )
    elif args.text:
        print(text, end="")
    else:
        print(f"receipt {entry.receipt_no} (seq {entry.seq}) written to {args.png}")
    return EXIT_OK
