"""Store-side reference consumer: subscribe to terminals' tx, store, acknowledge after commit."""

from edged.collector.service import run_collector
from edged.collector.store import (
    CollectorStore,
    CollectorStoreError,
    TerminalReport,
    collector_report,
)

__all__ = [
    "CollectorStore",
    "CollectorStoreError",
    "TerminalReport",
    "collector_report",
    "run_collector",
]
