"""Store-side reference consumer: subscribe to terminals' tx, store, acknowledge after commit."""

from edged.collector.report import TerminalReport, collector_report
from edged.collector.schema import CollectorDbChangedError, CollectorStoreError
from edged.collector.service import run_collector
from edged.collector.store import CollectorStore, init_collector_db

__all__ = [
    "CollectorDbChangedError",
    "CollectorStore",
    "CollectorStoreError",
    "TerminalReport",
    "collector_report",
    "init_collector_db",
    "run_collector",
]
