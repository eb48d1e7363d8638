"""Statistics and process information, as mimalloc reports them."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, TextIO

from . import _core

__all__ = ["ProcessInfo", "print_stats", "process_info", "reset_stats", "stats"]


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessInfo:
    """The process's memory and times right now. Times in milliseconds, sizes in bytes.

    ``current_rss`` and ``peak_rss`` are the kernel's (``/proc/self/statm`` and ``VmHWM`` on Linux): memory
    actually resident, whoever allocated it. ``current_commit`` and ``peak_commit`` are what mimalloc has
    committed (``mi_process_info``; its peak restarts at :func:`reset_stats`), and ``reserved`` the address
    space it has reserved. mimalloc v3.4.3 itself reports its committed counter as RSS on Linux, which stays
    high after memory it purged went back to the OS; pymimalloc does not pass that on.
    """

    elapsed_ms: int
    user_ms: int
    system_ms: int
    current_rss: int
    peak_rss: int
    current_commit: int
    peak_commit: int
    page_faults: int
    reserved: int


def _kernel_rss(fallback: tuple[int, int]) -> tuple[int, int]:
    """(current, peak) resident bytes as the kernel counts them; ``fallback`` where it cannot say."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            current = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/status", "rb") as status:
            peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith(b"VmHWM:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return fallback
    global _peak_seen
    _peak_seen = max(_peak_seen, peak, current)  # the kernel updates VmHWM lazily: never report less than seen
    return current, _peak_seen


_peak_seen = 0


def process_info() -> ProcessInfo:
    """Elapsed, user and system time, resident memory (the kernel's), mimalloc's committed and reserved
    memory, and page faults, right now."""
    elapsed, user, system, rss, peak_rss, commit, peak_commit, faults = _core.process_info_values()
    current_rss, peak_rss = _kernel_rss((rss, peak_rss))
    reserved = int(stats().get("reserved", {}).get("current", 0))
    return ProcessInfo(elapsed, user, system, current_rss, peak_rss, commit, peak_commit, faults, reserved)


def stats() -> dict[str, Any]:
    """Process-wide statistics as a dict (``mi_stats_get_json``). Sizes in bytes."""
    return json.loads(_core.stats_json())  # type: ignore[no-any-return]


def print_stats(file: TextIO | None = None) -> None:
    """Write mimalloc's text report of the process-wide statistics to ``file`` (default: sys.stdout)."""
    (sys.stdout if file is None else file).write(_core.stats_text())


def reset_stats() -> None:
    """Reset mimalloc's statistics counters (``mi_stats_reset``)."""
    _core.stats_reset()
