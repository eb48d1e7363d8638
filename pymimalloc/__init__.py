"""pymimalloc: the mimalloc allocator's heaps, blocks and controls for Python.

Quick start::

    import pymimalloc

    with pymimalloc.Heap() as heap:
        block = heap.malloc(64)
        block.view[:5] = b"hello"
    # leaving the block released all of the heap's memory at once

``import pymimalloc`` loads mimalloc and what :func:`install` needs, and nothing more: every other name is
imported from its module the first time it is used (PEP 562). A program that only calls :func:`install` thus
keeps no objects of ours or of the standard library's it does not use (measured: 4,449 fewer objects for the
garbage collector to walk, see ``tests/test_lazy_import.py``). Names are the same objects whichever way they
are reached: ``pymimalloc.Heap is pymimalloc.heap.Heap``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .allocator import install, installed, uninstall, warn_refused_options

if TYPE_CHECKING:  # what type checkers and the documentation see; at run time __getattr__ imports these
    from ._core import HeapScope
    from .arena import Arena
    from .arrays import HANDLER_NAME, TRACEMALLOC_DOMAIN
    from .block import Block, good_size, usable_size
    from .build import build_info, mimalloc_version
    from .collection import CollectResult, collect, collecting
    from .heap import Heap, default_heap, heap_of, main_heap, malloc
    from .measure import Measurement, measure
    from .options import options
    from .stats import HeapStats, ProcessInfo, format_size, print_stats, process_info, reset_stats, stats
    from .visit import Area, BlockInfo, Snapshot

# Each public name that is not imported above, and the module it comes from (tests/test_lazy_import.py checks
# that this table and the TYPE_CHECKING imports name the same things).
_LAZY: dict[str, str] = {
    "HeapScope": "_core",
    "Arena": "arena",
    "HANDLER_NAME": "arrays",
    "TRACEMALLOC_DOMAIN": "arrays",
    "Block": "block",
    "good_size": "block",
    "usable_size": "block",
    "build_info": "build",
    "mimalloc_version": "build",
    "CollectResult": "collection",
    "collect": "collection",
    "collecting": "collection",
    "Heap": "heap",
    "default_heap": "heap",
    "heap_of": "heap",
    "main_heap": "heap",
    "malloc": "heap",
    "Measurement": "measure",
    "measure": "measure",
    "options": "options",
    "HeapStats": "stats",
    "ProcessInfo": "stats",
    "format_size": "stats",
    "print_stats": "stats",
    "process_info": "stats",
    "reset_stats": "stats",
    "stats": "stats",
    "Area": "visit",
    "BlockInfo": "visit",
    "Snapshot": "visit",
}


def __getattr__(name: str) -> Any:
    """A public name's first use: import its module and keep the name here, so that later uses are plain
    attribute reads. The import system's per-module lock makes this safe from any number of threads."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """This package's module type. Once a submodule is loaded, the import system binds it to the package's attribute
    of the same name, and three public names are also submodules' names (``stats``, ``measure``, ``options``).
    Whichever module imports one of those first (``heap.py`` imports ``.stats``), ``pymimalloc.stats`` stays the
    function and never becomes the module (``pymimalloc.stats()`` would then fail)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if _LAZY.get(name) == name and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
warn_refused_options()
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
