"""The journal's seq mark: its last seq and hash in a small fsynced file beside it.

SQLite drops the tail of a damaged `-wal` without a word, and a journal restored from a backup
is older than the sales it once held: neither can say what it lost. This file can. It is
written (and fdatasync'ed) with each group commit, concurrently with the commit itself, so it is
never behind a committed seq; after a crash in between it may be ahead by one group, whose
callers never got an answer. A journal found behind its mark has lost seqs mark.seq - n .. mark.seq.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

import structlog

from edged import files

log = structlog.get_logger(__name__)

SUFFIX = ".seq"
_FORMAT = "edged-journal-seq 1 {seq:020d} {hash}\n"
_RECORD = re.compile(rb"edged-journal-seq 1 (\d{20}) ([0-9a-f]{64})\n")


class SeqMark(NamedTuple):
    seq: int
    hash: bytes


def mark_path(journal: Path) -> Path:
    return journal.with_name(journal.name + SUFFIX)


def read_mark(journal: Path) -> SeqMark | None:
    """The mark beside `journal`, or None if there is none or it cannot be read (logged)."""
    path = mark_path(journal)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("journal_seq_mark_unreadable", path=str(path), error=str(exc))
        return None
    found = _RECORD.fullmatch(data)
    if found is None:
        log.warning(
            "journal_seq_mark_unreadable",
            path=str(path),
            error="not a seq mark (damaged?)",
            hint="it is rewritten at the next commit; a lost tail before then goes unnoticed",
        )
        return None
    return SeqMark(int(found[1]), bytes.fromhex(found[2].decode()))


class SeqMarkFile:
    """The open mark file of a running journal; one fixed-size record, rewritten in place."""

    def __init__(self, journal: Path) -> None:
        self.path = mark_path(journal)
        try:
            self._fd = files.create_new(self.path)
            files.sync_folder(self.path.parent)
        except FileExistsError:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            files.tighten(self.path)
        self._sized = False

    def write(self, seq: int, digest: bytes) -> None:
        """Durably record `seq` as written (blocking: run it in a thread)."""
        record = _FORMAT.format(seq=seq, hash=digest.hex()).encode()
        os.pwrite(self._fd, record, 0)
        if not self._sized:  # the same size ever after: rewritten in place
            os.ftruncate(self._fd, len(record))
            self._sized = True
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
