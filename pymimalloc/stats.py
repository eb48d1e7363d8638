"""Statistics and process information, as mimalloc reports them."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, TextIO

from ._core import ffi, lib

__all__ = ["ProcessInfo", "process_info", "stats", "print_stats", "reset_stats", "take_text"]


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessInfo:
    """The process as mimalloc sees it (``mi_process_info``). Times in milliseconds, sizes in bytes.

    On Linux mimalloc v3.4.3 reports ``current_rss`` as its own committed-memory counter, and its peaks
    restart at :func:`reset_stats`.
    """

    elapsed_ms: int
    user_ms: int
    system_ms: int
    current_rss: int
    peak_rss: int
    current_commit: int
    peak_commit: int
    page_faults: int


def process_info() -> ProcessInfo:
    """Elapsed, user and system time, current and peak RSS and commit, and page faults, right now."""
    values = ffi.new("size_t[8]")
    lib.mi_process_info(*(values + i for i in range(8)))
    return ProcessInfo(*(int(v) for v in values))


def take_text(text: Any, what: str) -> str:
    """Decode a string from the C glue and free it (internal). MemoryError if the glue returned NULL."""
    if not text:
        raise MemoryError(f"mimalloc could not produce {what}")
    try:
        return ffi.string(text).decode("utf-8", "replace")  # type: ignore[no-any-return]
    finally:
        lib.pmi_text_free(text)


def stats() -> dict[str, Any]:
    """Process-wide statistics as a dict (``mi_stats_get_json``). Sizes in bytes."""
    return json.loads(take_text(lib.pmi_stats_json(), "statistics"))  # type: ignore[no-any-return]


def print_stats(file: TextIO | None = None) -> None:
    """Write mimalloc's text report of the process-wide statistics to ``file`` (default: sys.stdout)."""
    (sys.stdout if file is None else file).write(take_text(lib.pmi_stats_text(), "statistics"))


def reset_stats() -> None:
    """Reset mimalloc's statistics counters (``mi_stats_reset``)."""
    lib.mi_stats_reset()
