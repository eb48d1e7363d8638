"""Statistics and process information, as mimalloc reports them."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, TextIO

from . import _core

__all__ = ["HeapStats", "ProcessInfo", "format_size", "heap_stats", "print_stats", "process_info", "reset_stats", "stats"]


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


def format_size(size: int) -> str:
    """A byte count as tracemalloc prints one: "512 B", "1.2 MiB", "10 KiB" (3 to 4 significant digits)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 100 and unit != "B":
            return f"{value:.1f} {unit}"
        if abs(value) < 10 * 1024 or unit == "TiB":
            return f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


@dataclasses.dataclass(frozen=True, slots=True)
class HeapStats:
    """One heap's figures at one moment. Sizes in bytes. Every field is counted in every build: nothing
    here is a zero that only means "not counted".

    pymimalloc's own exact counters (the glue counts every block, array data and Python object):

    - ``live_blocks``, ``live_bytes``: alive now (Blocks by requested size; numpy data and Python objects by
      mimalloc's usable size), as :attr:`Heap.live_blocks` and :attr:`Heap.live_bytes`;
    - ``peak_live_bytes``: the highest ``live_bytes`` (pyarrow's ``max_memory()``), exact, or None once a
      second thread allocated from, freed into or resized a block of the heap: the counters are kept per
      thread, and a block allocated in one thread and freed in another leaves no exact peak to report;
    - ``allocations``: blocks ever allocated (pyarrow's ``num_allocations()``);
    - ``huge_bytes``: the part of ``live_bytes`` in blocks asked for above 512 KiB, which mimalloc v3 gives a
      page of their own (mimalloc's own count of them counts no free in release builds).

    mimalloc's counters that release builds keep too (``mi_heap_stats_get_json``; its other counters, such
    as requested bytes and size bins, are compiled in only with ``MI_STAT`` in checked builds), added up over
    every thread that used the heap (mimalloc keeps them per thread):

    - ``pages``, ``peak_pages``: pages the heap holds, now and at most (the peak is mimalloc's estimate across
      threads: the highest of a thread's peak plus the others' pages at the time of reading);
    - ``pages_abandoned``: full pages given back to the arena (docs/benchmarks.md, the FIFO ring).
    """

    live_blocks: int
    live_bytes: int
    peak_live_bytes: int | None
    allocations: int
    pages: int
    peak_pages: int
    pages_abandoned: int
    huge_bytes: int

    def __str__(self) -> str:
        return (f"{self.live_blocks:,} live blocks, {format_size(self.live_bytes)} "
                f"(peak {_peak_text(self.peak_live_bytes)}); {self.allocations:,} allocations; "
                f"{self.pages:,} pages (peak {self.peak_pages:,}), {self.pages_abandoned:,} abandoned; "
                f"huge blocks {format_size(self.huge_bytes)}")


def _peak_text(peak: int | None) -> str:
    return "unknown: several threads" if peak is None else format_size(peak)


def heap_stats(heap: Any, mimalloc: dict[str, Any]) -> HeapStats:
    """HeapStats of ``heap`` from pymimalloc's counters and ``mimalloc``, its mi_heap_stats_get_json dict."""

    def counter(name: str, field: str) -> int:
        value = mimalloc.get(name, {})
        return int(value.get(field, 0)) if isinstance(value, dict) else 0

    return HeapStats(live_blocks=_core.heap_live_blocks(heap), live_bytes=_core.heap_live_bytes(heap),
                     peak_live_bytes=_core.heap_peak_bytes(heap),
                     allocations=_core.heap_total_blocks(heap),
                     pages=counter("pages", "current"), peak_pages=counter("pages", "peak"),
                     pages_abandoned=counter("pages_abandoned", "total"),
                     huge_bytes=_core.heap_huge_bytes(heap))


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
    """Write mimalloc's text report of the process-wide statistics to ``file`` (default: sys.stdout; nothing if
    it is closed, as ``print`` does)."""
    out = sys.stdout if file is None else file
    if out is not None:
        out.write(_core.stats_text())


def reset_stats() -> None:
    """Reset mimalloc's statistics counters (``mi_stats_reset``)."""
    _core.stats_reset()
