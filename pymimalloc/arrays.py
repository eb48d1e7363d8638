"""numpy arrays whose data lives in a pymimalloc heap (NEP 49 memory handlers).

Each heap gets one ``PyDataMem_Handler`` (in a capsule named ``"mem_handler"``) whose context is the heap.
numpy keeps the handler of every array it allocates, so array data stays valid however the heap is
closed: the handler holds a counted reference to the heap's C wrapper, and a heap closed with live
arrays keeps their memory until the last of them is freed. numpy is imported on first use.
"""

from __future__ import annotations

from typing import Any

from . import _core

__all__ = ["HANDLER_NAME", "NUMPY", "TRACEMALLOC_DOMAIN", "numpy_ready"]

#: The name numpy reports for arrays allocated by pymimalloc (``numpy._core.multiarray.get_handler_name``).
HANDLER_NAME = "pymimalloc"
#: The tracemalloc domain of every Block allocated through pymimalloc
#: (``tracemalloc.DomainFilter(True, TRACEMALLOC_DOMAIN)``). Array data is traced by numpy itself, in
#: its domain 389047, whatever handler allocated it; tracing it here too would count it twice.
TRACEMALLOC_DOMAIN: int = _core.TRACEMALLOC_DOMAIN

def numpy_ready() -> None:
    """Import numpy's C API for pymimalloc, once. ImportError if it cannot be."""
    _core.numpy_functions()


class _NumpyCalls:
    """numpy's constructors and pymimalloc's numpy entry points, bound on first use.

    ``heap.empty(n)`` is a hot path: after the first call, each of these is one attribute load
    (``__getattr__`` runs only for names not yet bound).
    """

    NAMES = ("empty", "zeros", "ones", "full", "empty_like", "zeros_like", "array")

    def __getattr__(self, name: str) -> Any:
        import numpy

        functions = _core.numpy_functions()
        self.call = functions.call_with
        self.new = functions.new_array
        for constructor in self.NAMES:
            setattr(self, constructor, getattr(numpy, constructor))
        return object.__getattribute__(self, name)


#: ``NUMPY.call(handler, NUMPY.empty, ...)`` runs a numpy constructor with a heap's handler set;
#: ``NUMPY.new(handler, shape, dtype, order, zero)`` makes an empty (or zeroed) array in C without setting it.
NUMPY: Any = _NumpyCalls()
