"""Hand memory that a burst of work freed back to the system, so the idle RSS stays low.

CPython's allocator and glibc's keep freed memory for reuse; after a one-off burst (a flood of
API clients, a reference-data snapshot built in a worker thread) that memory would stay in the
daemon's RSS for good. `release()` collects reference cycles, then asks glibc to return free
pages of every arena (the main heap and each thread's). Elsewhere than glibc it only collects.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from typing import Any


class _Malloc:
    """glibc's malloc_trim through ctypes; does nothing on another libc.

    Measured (scripts/bench api_flood): after 15 rounds of 100 clients holding 1 MiB each,
    the RSS stayed at 2.3x idle; with gc.collect() it was 1.4x, and with malloc_trim(0)
    besides 1.03x. A fixed mmap threshold (mallopt) made no difference once trimmed.
    """

    def __init__(self) -> None:
        self._libc: Any = None
        name = ctypes.util.find_library("c")
        if name:
            with contextlib.suppress(OSError):
                libc = ctypes.CDLL(name)
                if hasattr(libc, "malloc_trim"):
                    self._libc = libc

    def trim(self) -> None:
        if self._libc is not None:
            self._libc.malloc_trim(0)


malloc = _Malloc()


def release() -> None:
    """Collect cycles (freed objects linger in them until the gc's rare full run), then trim."""
    gc.collect()
    malloc.trim()
