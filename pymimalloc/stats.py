"""Statistics and process information, as mimalloc reports them."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, TextIO

from . import _core

__all__ = ["ProcessInfo", "print_stats", "process_info", "reset_stats", "stats"]


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
    return ProcessInfo(*_core.process_info_values())


def stats() -> dict[str, Any]:
    """Process-wide statistics as a dict (``mi_stats_get_json``). Sizes in bytes."""
    return json.loads(_core.stats_json())  # type: ignore[no-any-return]


def print_stats(file: TextIO | None = None) -> None:
    """Write mimalloc's text report of the process-wide statistics to ``file`` (default: sys.stdout)."""
    (sys.stdout if file is None else file).write(_core.stats_text())


def reset_stats() -> None:
    """Reset mimalloc's statistics counters (``mi_stats_reset``)."""
    _core.stats_reset()
