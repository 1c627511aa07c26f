"""Store-side reference consumer: subscribe to terminals' tx, store, acknowledge after commit."""

from edged.collector.report import TerminalReport, collector_report
from edged.collector.schema import CollectorStoreError
from edged.collector.service import run_collector
from edged.collector.store import CollectorStore

__all__ = [
    "CollectorStore",
    "CollectorStoreError",
    "TerminalReport",
    "collector_report",
    "run_collector",
]
