"""pymimalloc: the mimalloc allocator's heaps, blocks and controls for Python.

Quick start::

    import pymimalloc

    with pymimalloc.Heap() as heap:
        block = heap.malloc(64)
        block.view[:5] = b"hello"
    # leaving the block released all of the heap's memory at once
"""

from ._version import __version__
from .allocator import install, installed, uninstall, warn_refused_options
from .arena import Arena
from .arrays import HANDLER_NAME, TRACEMALLOC_DOMAIN
from .block import Block, good_size, usable_size
from .build import build_info, mimalloc_version
from .collection import CollectResult, collect, collecting
from .options import options
from .stats import HeapStats, ProcessInfo, format_size, print_stats, process_info, reset_stats, stats
from ._core import HeapScope
from .heap import Heap, default_heap, heap_of, main_heap, malloc
from .visit import Area, BlockInfo, Snapshot
from .measure import Measurement, measure

warn_refused_options()  # what mimalloc's start put back from the environment, said once
del warn_refused_options

__all__ = [
    "__version__",
    "HANDLER_NAME",
    "TRACEMALLOC_DOMAIN",
    "Arena",
    "Area",
    "Block",
    "BlockInfo",
    "Heap",
    "HeapScope",
    "Snapshot",
    "build_info",
    "CollectResult",
    "HeapStats",
    "Measurement",
    "measure",
    "ProcessInfo",
    "format_size",
    "collect",
    "collecting",
    "default_heap",
    "malloc",
    "options",
    "print_stats",
    "process_info",
    "reset_stats",
    "stats",
    "good_size",
    "heap_of",
    "main_heap",
    "mimalloc_version",
    "usable_size",
    "install",
    "installed",
    "uninstall",
]
