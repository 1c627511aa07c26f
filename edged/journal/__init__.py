"""Durable local state in SQLite: sales, seq, hash chain, outbox."""

from edged.journal.rows import StoredEntry
from edged.journal.store import CommitResult, Journal, JournalStats

__all__ = ["CommitResult", "Journal", "JournalStats", "StoredEntry"]
