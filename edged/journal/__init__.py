"""Durable local state in SQLite: sales, seq, hash chain, outbox."""

from edged.journal.store import CommitResult, Journal, JournalStats, StoredEntry

__all__ = ["CommitResult", "Journal", "JournalStats", "StoredEntry"]
