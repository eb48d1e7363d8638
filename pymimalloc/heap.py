"""Heaps: first-class mimalloc v3 heaps, usable from any Python thread.

A Heap hands out Blocks. Closing it releases all its memory at once (``mi_heap_destroy``) when nothing
allocated from it is still alive; otherwise the live blocks are handed to the main heap
(``mi_heap_delete``) and stay valid until their owners free them. Either way nothing dangles and
nothing leaks. The locking that makes close safe against allocations in other threads is in C
(``csrc/pmi_heap.c``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _core
from ._core import ffi, lib
from .arena import Arena
from .arrays import NP, handler_of, numpy_allocator
from .block import Block, _adopt, _exports_lock, _gc, _new_block, _release, address_of
from .stats import take_text
from .visit import Area, BlockInfo, Snapshot, VisitCallback, frozen, visit, walk

if TYPE_CHECKING:
    from types import TracebackType

    import numpy as np

__all__ = ["Heap", "main_heap", "heap_of", "default_heap", "malloc"]

# mi_heap_t address -> Heap, for heap_of(). Entries go when the heap closes or its Heap object dies.
_heaps_by_id: weakref.WeakValueDictionary[int, Heap] = weakref.WeakValueDictionary()
_main_heap_lock = threading.Lock()
_main_heap: Heap | None = None
_block_alloc = lib.pmi_block_alloc
_MAX_SIZE = _core.MAX_SIZE
_defaults = threading.local()  # .stack: the Heaps of this thread's nested as_default() blocks


def _default_stack() -> list[Heap]:
    stack: list[Heap] | None = getattr(_defaults, "stack", None)
    if stack is None:
        stack = _defaults.stack = []
    return stack


class Heap:
    """A mimalloc heap. Allocate Blocks from it; close it to release its memory.

    Any thread may allocate from a Heap and free blocks into it. Use it as a context manager: leaving
    the ``with`` statement calls :meth:`close`. A Heap that is garbage-collected while open is closed
    the same way.
    """

    __slots__ = ("_handle", "_id", "_arena", "_numpy_handler", "_freezes", "__weakref__")

    _handle: Any  # pmi_heap_t* with destructor pmi_heap_release
    _id: int
    _arena: Arena | None

    def __init__(self, arena: Arena | None = None) -> None:
        """A new heap; with ``arena``, one that allocates only inside that Arena (``mi_heap_new_in_arena``).

        Raises ValueError for a released arena, TypeError if ``arena`` is not an Arena.
        """
        if arena is None:
            handle = lib.pmi_heap_new()
        elif isinstance(arena, Arena):
            handle = lib.pmi_heap_new_in_arena(arena._id_for_new_heap())
        else:
            raise TypeError(f"arena must be an Arena, not {type(arena).__name__}")
        if not handle:
            raise MemoryError("mimalloc could not create a heap")
        self._attach(handle, arena)

    def _attach(self, handle: Any, arena: Arena | None = None) -> None:
        self._arena = arena
        self._numpy_handler: Any = None  # capsule for numpy, made on first use (arrays.py)
        self._freezes = 0  # visits and snapshots in progress (visit.py), so Block.free need not ask C
        self._handle = ffi.gc(handle, lib.pmi_heap_release)
        self._id = int(lib.pmi_heap_id(handle))
        _heaps_by_id[self._id] = self

    # -- allocation ---------------------------------------------------------------------------------
    def _allocate(self, size: int, alignment: int, zero: bool) -> Block:
        record = _block_alloc(self._handle, size, alignment, zero)
        if not record:
            self._allocation_failed(size)
        return _adopt(record, self)

    def _allocation_failed(self, size: int) -> None:
        failure = lib.pmi_allocation_failure()
        if failure in (lib.PMI_ECLOSED, lib.PMI_EBUSY):
            raise ValueError("cannot allocate from a closed heap")
        if failure == lib.PMI_ENOMEM:
            raise MemoryError(f"mimalloc could not allocate {size} bytes")
        _core.check(failure, "allocation")

    def malloc(self, size: int) -> Block:
        """Allocate a Block of ``size`` bytes (uninitialised contents).

        Raises TypeError if size is not an int, ValueError if it is negative or the heap is closed,
        MemoryError if it is too large or memory runs out.
        """
        # the hot path, inlined: a plain int in range goes straight to C
        if type(size) is not int or not 0 <= size <= _MAX_SIZE:
            size = _core.as_size(size)
        record = _block_alloc(self._handle, size, 0, False)
        if not record:
            self._allocation_failed(size)
        block = _new_block(Block)  # _adopt(), inlined
        block._record = _gc(record, _release)
        block._heap = self
        block._exporter = None
        return block

    def zalloc(self, size: int) -> Block:
        """Allocate a zero-filled Block of ``size`` bytes. Raises as :meth:`malloc`."""
        return self._allocate(_core.as_size(size), 0, True)

    def calloc(self, count: int, size: int) -> Block:
        """Allocate a zero-filled Block for ``count`` items of ``size`` bytes each. Raises as :meth:`malloc`;
        MemoryError if ``count * size`` overflows."""
        total = _core.as_size(count, "count") * _core.as_size(size)
        if total > _core.MAX_SIZE:
            raise MemoryError(f"calloc of {count} x {size} bytes is more than mimalloc can allocate")
        return self._allocate(total, 0, True)

    def malloc_aligned(self, size: int, alignment: int) -> Block:
        """Allocate ``size`` bytes at an address that is a multiple of ``alignment`` (a power of two, bytes).

        Raises ValueError for an alignment that is not a power of two, else as :meth:`malloc`.
        """
        return self._allocate(_core.as_size(size), _core.as_alignment(alignment), False)

    def zalloc_aligned(self, size: int, alignment: int) -> Block:
        """Like :meth:`malloc_aligned`, zero-filled."""
        return self._allocate(_core.as_size(size), _core.as_alignment(alignment), True)

    def realloc(self, block: Block, size: int) -> Block:
        """Resize ``block`` to ``size`` bytes, keeping its contents up to the smaller size.

        Returns a new Block; the old one is freed (using it raises ValueError). Raises ValueError if the
        block belongs to another heap or is freed, or this heap is closed; BufferError while views of the
        block are exported; MemoryError if memory runs out (the old block is then unchanged).
        """
        if not isinstance(block, Block):
            raise TypeError(f"realloc needs a Block, not {type(block).__name__}")
        size = _core.as_size(size)
        with _exports_lock:
            record = block._live()
            if block._heap is not self:
                raise ValueError("the block was allocated from another heap")
            self._check_usable()  # a closed (or frozen) heap is the first thing to report
            if block._views_exported():
                raise BufferError("cannot realloc a Block while views of it are exported; release them first")
            moved = lib.pmi_block_realloc(record, size)
            if not moved:
                self._allocation_failed(size)
            block._detach()
        return _adopt(moved, self)

    # -- queries ------------------------------------------------------------------------------------
    def contains(self, obj: Block | int | Any) -> bool:
        """Whether ``obj`` (a Block, an int address, or an object exporting a buffer) lies in this heap.

        Addresses that are not mimalloc's give False, never a crash. Raises ValueError if the heap is
        closed or ``obj`` is a freed Block, TypeError for other objects.
        """
        address = address_of(obj)
        if address is None:
            self._check_open()
            return False
        return bool(_core.check(lib.pmi_heap_contains(self._handle, address), "contains"))

    __contains__ = contains

    @property
    def closed(self) -> bool:
        """True once :meth:`close`, :meth:`destroy` or :meth:`delete` has run."""
        return lib.pmi_heap_state(self._handle) != lib.PMI_STATE_OPEN

    @property
    def is_main(self) -> bool:
        """True for mimalloc's main heap (see :func:`main_heap`), which cannot be closed."""
        return bool(lib.pmi_heap_is_main(self._handle))

    @property
    def live_blocks(self) -> int:
        """How many Blocks allocated from this heap are alive (a plain, cheap counter)."""
        return int(lib.pmi_heap_live_blocks(self._handle))

    @property
    def live_bytes(self) -> int:
        """How many bytes (as requested) the live Blocks of this heap hold."""
        return int(lib.pmi_heap_live_bytes(self._handle))

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("the heap is closed")

    def _check_usable(self) -> None:
        """Raise ValueError if closed, RuntimeError if frozen by a visit or snapshot."""
        state = lib.pmi_heap_state(self._handle)
        if state == lib.PMI_STATE_FROZEN:
            _core.check(lib.PMI_EFROZEN, "allocation")
        if state != lib.PMI_STATE_OPEN:
            raise ValueError("cannot allocate from a closed heap")

    def stats(self) -> dict[str, Any]:
        """This heap's statistics as a dict (``mi_heap_stats_get_json``). ValueError if closed."""
        text = lib.pmi_heap_stats_json(self._handle)
        if not text:
            self._check_usable()
        return json.loads(take_text(text, "heap statistics"))  # type: ignore[no-any-return]

    @property
    def arena(self) -> Arena | None:
        """The Arena this heap is confined to, or None."""
        return self._arena

    @contextlib.contextmanager
    def as_default(self) -> Iterator[Heap]:
        """Make this heap the current thread's default for the ``with`` block, then restore the previous one.

        :func:`pymimalloc.malloc` and mimalloc's own ``mi_malloc`` in this thread allocate from it meanwhile.
        Other threads are unaffected; blocks nest. The heap cannot be closed while it is a default
        (RuntimeError). Enter and leave the block in the same thread.
        """
        previous = ffi.new("void **")
        _core.check(lib.pmi_heap_push_default(self._handle, previous), "as_default")
        stack = _default_stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()
            lib.pmi_heap_pop_default(self._handle, previous[0])

    # -- numpy ---------------------------------------------------------------------------------------
    def numpy_allocator(self) -> contextlib.AbstractContextManager[Heap]:
        """``with heap.numpy_allocator():`` every numpy array created in this context (this thread or async
        task, as numpy scopes it), numpy's temporaries included, gets its data from this heap. The previous
        handler comes back on exit, even on error; blocks nest. The heap cannot be closed meanwhile."""
        return numpy_allocator(self)

    def _numpy_failed(self) -> None:
        self._check_usable()  # closed or frozen says so; otherwise it was a real MemoryError

    def empty(self, shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
        """``numpy.empty`` with the data in this heap. ValueError if closed, RuntimeError if frozen."""
        try:
            return NP.call(self._numpy_handler or handler_of(self), NP.empty, shape, dtype, order)  # type: ignore[no-any-return]
        except MemoryError:
            self._numpy_failed()
            raise

    def _numpy_call(self, func: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        """Run a numpy constructor with this heap's handler (``empty`` inlines this: it is the hot one)."""
        try:
            return NP.call(self._numpy_handler or handler_of(self), func, *args, **kwargs)  # type: ignore[no-any-return]
        except MemoryError:
            self._numpy_failed()
            raise

    def zeros(self, shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
        """``numpy.zeros`` with the data in this heap, zeroed by mimalloc (its calloc), not by a memset."""
        return self._numpy_call(NP.zeros, shape, dtype, order)

    def ones(self, shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
        """``numpy.ones`` with the data in this heap."""
        return self._numpy_call(NP.ones, shape, dtype, order)

    def full(self, shape: Any, fill_value: Any, dtype: Any = None, order: str = "C") -> np.ndarray:
        """``numpy.full`` with the data in this heap."""
        return self._numpy_call(NP.full, shape, fill_value, dtype, order)

    def empty_like(self, prototype: Any, dtype: Any = None) -> np.ndarray:
        """``numpy.empty_like`` with the data in this heap."""
        return self._numpy_call(NP.empty_like, prototype, dtype)

    def zeros_like(self, prototype: Any, dtype: Any = None) -> np.ndarray:
        """``numpy.zeros_like`` with the data in this heap."""
        return self._numpy_call(NP.zeros_like, prototype, dtype)

    def asarray(self, obj: Any, dtype: Any = None) -> np.ndarray:
        """A copy of ``obj`` as an array with its data in this heap (always a copy, unlike numpy.asarray)."""
        return self._numpy_call(NP.array, obj, dtype, copy=True)

    # -- walking ------------------------------------------------------------------------------------
    def areas(self) -> Iterator[Area]:
        """The heap's areas (``mi_heap_visit_blocks``), recorded at the time of the call."""
        with frozen(self):
            found = walk(self, False)
        return iter([area for area, _ in found])

    def blocks(self) -> Iterator[BlockInfo]:
        """Every live block of the heap, recorded at the time of the call.

        These are mimalloc's blocks: an aligned allocation may lie inside one, so its ``Block.address``
        can be after the ``BlockInfo.address`` of the block that holds it.
        """
        with frozen(self):
            found = walk(self, True)
        return iter([info for _, infos in found for info in infos])

    def visit(self, callback: VisitCallback, blocks: bool = True) -> bool:
        """Call ``callback(area, None)`` for each area and, if ``blocks``, ``callback(area, block_info)``
        for each live block of that area.

        A falsy return stops the walk and makes ``visit`` return False; an exception in the callback
        stops it and propagates unchanged. While the walk runs the heap is frozen: allocating from it
        or freeing into it raises RuntimeError (blocks dropped meanwhile are freed afterwards).
        """
        return visit(self, callback, bool(blocks))

    def snapshot(self) -> Snapshot:
        """A context manager: ``with heap.snapshot() as snap:`` gives ``snap.areas``, ``snap.blocks``,
        ``snap.live_blocks`` and ``snap.live_bytes``, with the heap frozen until the block ends."""
        return Snapshot(self)

    # -- collection and closing ----------------------------------------------------------------------
    def collect(self, force: bool = False) -> None:
        """Return unused memory of this heap to the OS (``mi_heap_collect``). ValueError if closed."""
        _core.check(lib.pmi_heap_collect(self._handle, bool(force)), "collect")

    def close(self) -> None:
        """Close the heap. Idempotent.

        With nothing allocated from the heap still alive, all its memory is released at once
        (``mi_heap_destroy``). Otherwise live Blocks are handed to the main heap (``mi_heap_delete``):
        they stay valid and are freed when their owners go. Raises ValueError for the main heap, and
        RuntimeError during a visit or snapshot of this heap or while it is a thread's default heap.
        """
        status = lib.pmi_heap_close(self._handle, lib.PMI_CLOSE_AUTO)
        if status in (lib.PMI_EMAIN, lib.PMI_EFROZEN, lib.PMI_EPINNED):  # ECLOSED/EBUSY: already (being) closed
            _core.check(status, "close")
        self._unregister()

    def destroy(self) -> None:
        """Release all of the heap's memory at once (``mi_heap_destroy``), strictly.

        Raises BufferError while any Block allocated from it is alive (the heap stays open), ValueError
        if it is already closed or is the main heap.
        """
        _core.check(lib.pmi_heap_close(self._handle, lib.PMI_CLOSE_DESTROY), "destroy")
        self._unregister()

    def delete(self) -> None:
        """Close the heap, handing its live blocks to the main heap (``mi_heap_delete``).

        Raises ValueError if the heap is already closed or is the main heap.
        """
        _core.check(lib.pmi_heap_close(self._handle, lib.PMI_CLOSE_DELETE), "delete")
        self._unregister()

    def _unregister(self) -> None:
        if _heaps_by_id.get(self._id) is self:
            _heaps_by_id.pop(self._id, None)

    def __enter__(self) -> Heap:
        self._check_open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.is_main:
            self.close()

    def __repr__(self) -> str:
        state = "main" if self.is_main else ("closed" if self.closed else "open")
        return f"<pymimalloc.Heap {state} live_blocks={self.live_blocks} live_bytes={self.live_bytes}>"


def main_heap() -> Heap:
    """mimalloc's main heap (the one ``mi_malloc`` uses). It can be allocated from but not closed."""
    global _main_heap
    with _main_heap_lock:
        if _main_heap is None:
            heap = object.__new__(Heap)
            heap._attach(lib.pmi_heap_main_handle())
            _main_heap = heap
        return _main_heap


def heap_of(obj: Block | int | Any) -> Heap | None:
    """The open Heap holding ``obj`` (a Block, an int address, or a buffer), or None.

    Blocks of a closed heap belong to the main heap. Addresses not managed by mimalloc (or by a heap
    pymimalloc does not know) give None, never a crash.
    """
    address = address_of(obj)
    if address is None:
        return None
    heap_id = int(lib.pmi_heap_of(address))
    if heap_id == 0:
        return None
    if heap_id == int(lib.pmi_heap_id(main_heap()._handle)):
        return main_heap()
    return _heaps_by_id.get(heap_id)


def default_heap() -> Heap:
    """The current thread's default heap: the innermost ``as_default()`` heap, else the main heap."""
    stack = _default_stack()
    return stack[-1] if stack else main_heap()


def malloc(size: int) -> Block:
    """Allocate a Block of ``size`` bytes from the current thread's default heap (see ``Heap.as_default``)."""
    return default_heap().malloc(size)
