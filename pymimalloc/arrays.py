"""numpy arrays whose data lives in a pymimalloc heap (NEP 49 memory handlers).

Each heap gets one ``PyDataMem_Handler`` (in a capsule named ``"mem_handler"``) whose context is the heap.
numpy keeps the handler of every array it allocates, so array data stays valid however the heap is
closed: the handler holds a counted reference to the heap's C wrapper, and a heap closed with live
arrays keeps their memory until the last of them is freed. numpy is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from . import _core
from ._core import SCOPE_NUMPY, HeapBase, HeapScope

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HANDLER_NAME", "HeapArrays", "NUMPY", "TRACEMALLOC_DOMAIN", "numpy_ready"]

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


class HeapArrays:
    """The numpy half of :class:`pymimalloc.Heap`: arrays whose data lives in the heap, and the heap as
    numpy's allocator. ``empty`` and ``zeros`` are C methods of the heap itself (csrc/pmi_python.c, one call
    into numpy's C API); their slow paths and every other constructor are here."""

    __slots__ = ()

    if TYPE_CHECKING:  # provided by the Heap's C part and by Heap

        def _numpy_handler(self) -> Any: ...
        def _check_usable(self) -> None: ...

    def numpy_allocator(self) -> HeapScope:
        """``with heap.numpy_allocator():`` every numpy array created in this context (this thread or async
        task, as numpy scopes it), numpy's temporaries included, gets its data from this heap. The previous
        handler comes back on exit, even on error, unless a block entered later still holds numpy's
        handler; blocks nest. The heap cannot be closed meanwhile. Single use. A context that still has the
        handler once the block ended (an asyncio task made inside it; the entering context of a block left
        from another) allocates from the heap, and from the C library once the heap is closed."""
        numpy_ready()
        return HeapScope(cast(HeapBase, self), SCOPE_NUMPY)  # mixed only into Heap, a HeapBase

    def _handler(self) -> Any:
        """The heap's numpy handler capsule, made on first use and kept by the C part."""
        numpy_ready()
        return self._numpy_handler()

    def _numpy_new(self, constructor: Any, shape: Any, dtype: Any, order: str, zero: bool) -> np.ndarray:
        try:
            array = NUMPY.new(self._handler(), shape, dtype, order, zero)
        except MemoryError:
            self._check_usable()  # closed or frozen says so; otherwise it was a real MemoryError
            raise
        if array is NotImplemented:  # object dtypes and the like: numpy initialises them itself
            return self._numpy_call(constructor, shape, dtype, order)
        return array  # type: ignore[no-any-return]

    def _numpy_call(self, func: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        """Run a numpy constructor with this heap's handler set. A closed heap refuses with ValueError, as every use
        of it does: its handler gives the C library's memory to a context that still names it, never to a call on
        the heap itself (a review found ones(), full(), asarray() and the ``_like`` constructors returning such
        arrays). So does a heap another thread closed during the call: the array, whose data may then be the C
        library's, is dropped."""
        self._check_usable()
        try:
            array = NUMPY.call(self._handler(), func, *args, **kwargs)
        except MemoryError:
            self._check_usable()  # closed or frozen says so; otherwise it was a real MemoryError
            raise
        if _core.heap_state(self) == _core.STATE_CLOSED:
            del array
            self._check_usable()
        return array  # type: ignore[no-any-return]

    def ones(self, shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
        """``numpy.ones`` with the data in this heap."""
        return self._numpy_call(NUMPY.ones, shape, dtype, order)

    def full(self, shape: Any, fill_value: Any, dtype: Any = None, order: str = "C") -> np.ndarray:
        """``numpy.full`` with the data in this heap."""
        return self._numpy_call(NUMPY.full, shape, fill_value, dtype, order)

    def empty_like(self, prototype: Any, dtype: Any = None) -> np.ndarray:
        """``numpy.empty_like`` with the data in this heap."""
        return self._numpy_call(NUMPY.empty_like, prototype, dtype)

    def zeros_like(self, prototype: Any, dtype: Any = None) -> np.ndarray:
        """``numpy.zeros_like`` with the data in this heap."""
        return self._numpy_call(NUMPY.zeros_like, prototype, dtype)

    def asarray(self, obj: Any, dtype: Any = None) -> np.ndarray:
        """A copy of ``obj`` as an array with its data in this heap (always a copy, unlike numpy.asarray)."""
        return self._numpy_call(NUMPY.array, obj, dtype, copy=True)


# -- the slow paths of the C methods Heap.empty and Heap.zeros (registered by heap.py with the others) -------
def empty_slow(heap: HeapArrays, shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
    """heap.empty before the heap has its numpy handler, or for what numpy must make itself."""
    return heap._numpy_new(NUMPY.empty, shape, dtype, order, False)


def zeros_slow(heap: HeapArrays, shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
    return heap._numpy_new(NUMPY.zeros, shape, dtype, order, True)
