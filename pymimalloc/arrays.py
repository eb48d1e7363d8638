"""numpy arrays whose data lives in a pymimalloc heap (NEP 49 memory handlers).

Each heap gets one ``PyDataMem_Handler`` (in a capsule named ``"mem_handler"``) whose context is the heap.
numpy keeps the handler of every array it allocates, so array data stays valid however the heap is
closed: the handler holds a counted reference to the heap's C wrapper, and a heap closed with live
arrays keeps their memory until the last of them is freed. numpy is imported on first use.
"""

from __future__ import annotations

from typing import Any

from . import _core

__all__ = ["HANDLER_NAME", "NP", "TRACEMALLOC_DOMAIN", "numpy_ready"]

#: The name numpy reports for arrays allocated by pymimalloc (``numpy._core.multiarray.get_handler_name``).
HANDLER_NAME = "pymimalloc"
#: The tracemalloc domain of every Block allocated through pymimalloc
#: (``tracemalloc.DomainFilter(True, TRACEMALLOC_DOMAIN)``). Array data is traced by numpy itself, in
#: its domain 389047, whatever handler allocated it; tracing it here too would count it twice.
TRACEMALLOC_DOMAIN: int = _core.TRACEMALLOC_DOMAIN

_module: Any = None


def _c_api() -> Any:
    """The compiled module, with its numpy entry points installed (numpy's C API imported once)."""
    global _module
    if _module is None:
        _module = _core.numpy_entry_points()
    return _module


def numpy_ready() -> None:
    """Import numpy's C API for pymimalloc, once. ImportError if it cannot be."""
    _c_api()


class _Binding:
    """numpy's constructors and the C entry point, bound on first use.

    ``heap.empty(n)`` is a hot path: after the first call, each of these is one attribute load
    (``__getattr__`` runs only for names not yet bound).
    """

    NAMES = ("empty", "zeros", "ones", "full", "empty_like", "zeros_like", "array")

    def __getattr__(self, name: str) -> Any:
        import numpy

        self.call = _c_api()._numpy_call_with
        self.new = _c_api()._numpy_empty
        for constructor in self.NAMES:
            setattr(self, constructor, getattr(numpy, constructor))
        return object.__getattribute__(self, name)


#: ``NP.call(handler, NP.empty, ...)`` runs a numpy constructor with a heap's handler set;
#: ``NP.new(handler, shape, dtype, order, zero)`` makes an empty (or zeroed) array in C without setting it.
NP: Any = _Binding()
