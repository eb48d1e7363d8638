"""Heaps: first-class mimalloc v3 heaps, usable from any Python thread.

A Heap hands out Blocks. Closing it releases all its memory at once (``mi_heap_destroy``) when nothing
allocated from it is still alive; otherwise the heap refuses new allocations, its live blocks stay valid
until their owners free them, and the last free releases its memory. Either way nothing dangles and
nothing leaks. The locking that makes close safe against allocations in other threads is in C
(``csrc/pmi_heap.c``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import _core
from .arena import Arena, id_for_new_heap
from ._core import HeapScope
from ._process import ProcessLocal
from ._validate import MAX_SIZE, as_alignment, as_size
from .allocator import hook_for_python_objects
from .arrays import HeapArrays, empty_slow, zeros_slow
from .block import Block, address_of
from .stats import HeapStats, heap_stats
from .visit import Area, BlockInfo, Snapshot, VisitCallback, visit, walk

if TYPE_CHECKING:
    from types import TracebackType

    import numpy as np

__all__ = ["Heap", "main_heap", "heap_of", "default_heap", "malloc"]

_main_heap: dict[str, Heap] = {}  # "heap": the one Heap object for mimalloc's main heap, once made (main_heap())


class Heap(ProcessLocal, HeapArrays, _core.HeapBase):
    """A mimalloc heap. Allocate Blocks from it; close it to release its memory.

    Its numpy methods (``empty``, ``zeros``, ``ones``, ``numpy_allocator()`` ...) come from
    :class:`pymimalloc.arrays.HeapArrays`, where everything numpy lives.

    Any thread may allocate from a Heap and free blocks into it. Use it as a context manager: leaving
    the ``with`` statement calls :meth:`close`. A Heap that is garbage-collected while open is closed
    the same way.
    """

    # The mimalloc heap and its numpy handler belong to the C part (HeapBase), out of Python's reach.
    __slots__ = ("_arena", "__weakref__")
    _unshareable_why = "it is one mimalloc heap, and its memory lives only in this process; share the object itself"

    _arena: Arena | None

    def __init__(self, arena: Arena | None = None) -> None:
        """A new heap; with ``arena``, one that allocates only inside that Arena (``mi_heap_new_in_arena``).

        Raises ValueError for a released arena, TypeError if ``arena`` is not an Arena, and TypeError when
        called again on a Heap that already has its mimalloc heap.
        """
        if arena is not None and not isinstance(arena, Arena):
            raise TypeError(f"arena must be an Arena, not {type(arena).__name__}")
        self._open(0 if arena is None else id_for_new_heap(arena))  # MemoryError if mimalloc cannot
        self._arena = arena

    # -- allocation: malloc, zalloc, realloc and _allocate are C methods (HeapBase, csrc/pmi_python.c); their
    # Python slow paths are the functions registered at the end of this module --------------------------
    def calloc(self, count: int, size: int) -> Block:
        """Allocate a zero-filled Block for ``count`` items of ``size`` bytes each. Raises as :meth:`malloc`;
        MemoryError if ``count * size`` overflows."""
        total = as_size(count, "count") * as_size(size)
        if total > MAX_SIZE:
            raise MemoryError(f"calloc of {count} x {size} bytes is more than mimalloc can allocate")
        return self._allocate(total, 0, True)

    def malloc_aligned(self, size: int, alignment: int) -> Block:
        """Allocate ``size`` bytes at an address that is a multiple of ``alignment`` (a power of two, bytes).

        Raises ValueError for an alignment that is not a power of two, else as :meth:`malloc`.
        """
        return self._allocate(as_size(size), as_alignment(alignment), False)

    def zalloc_aligned(self, size: int, alignment: int) -> Block:
        """Like :meth:`malloc_aligned`, zero-filled."""
        return self._allocate(as_size(size), as_alignment(alignment), True)

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
        return _core.heap_contains(self, address)

    __contains__ = contains

    @property
    def closed(self) -> bool:
        """True once :meth:`close`, :meth:`destroy` or :meth:`delete` has run (a frozen heap is open)."""
        return _core.heap_state(self) == _core.STATE_CLOSED

    @property
    def frozen(self) -> bool:
        """True while a visit or snapshot holds the heap still (allocations and frees raise RuntimeError)."""
        return _core.heap_state(self) == _core.STATE_FROZEN

    @property
    def is_main(self) -> bool:
        """True for mimalloc's main heap (see :func:`main_heap`), which cannot be closed."""
        return _core.heap_is_main(self)

    @property
    def live_blocks(self) -> int:
        """How many Blocks (and numpy array data) allocated from this heap are alive.

        A sum of per-thread counters: exact while no other thread allocates from or frees into this heap;
        while they do, it may miss what they did during the read, as any snapshot of a moving count does."""
        return _core.heap_live_blocks(self)

    @property
    def live_bytes(self) -> int:
        """How many bytes (as requested) the live Blocks of this heap hold (array data: usable size).

        Summed like :attr:`live_blocks`."""
        return _core.heap_live_bytes(self)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("the heap is closed")

    def _check_usable(self, what: str = "cannot allocate") -> None:
        """Raise ValueError if closed, RuntimeError if frozen by a visit or snapshot; ``what`` starts the message."""
        state = _core.heap_state(self)
        if state != _core.STATE_OPEN:
            _core.check(_core.EFROZEN if state == _core.STATE_FROZEN else _core.ECLOSED, what)

    def stats(self) -> HeapStats:
        """This heap's figures (:class:`HeapStats`): pymimalloc's exact live, peak and allocation counts, and
        the page counts mimalloc keeps in every build. ``print(heap.stats())`` reads as tracemalloc's sizes do
        (``1.2 MiB``). ValueError if closed."""
        return heap_stats(self, self.mimalloc_stats())

    def mimalloc_stats(self) -> dict[str, Any]:
        """mimalloc's own statistics of this heap as a dict (``mi_heap_stats_get_json``). A release build
        keeps only some of them (pages, abandoned pages, huge blocks, page searches); the rest (requested
        bytes, size bins) read 0 unless built with ``PYMIMALLOC_DEBUG``. ValueError if closed."""
        text = _core.heap_stats_json(self)
        if text is None:
            self._check_usable("stats")  # closed or frozen says so; otherwise mimalloc ran out of memory
            raise MemoryError("mimalloc could not produce heap statistics")
        return json.loads(text)  # type: ignore[no-any-return]

    @property
    def arena(self) -> Arena | None:
        """The Arena this heap is confined to, or None."""
        return self._arena

    def as_default(self) -> HeapScope:
        """``with heap.as_default():`` makes this heap the default of the current context (thread or asyncio
        task, like numpy's handler and ``decimal.localcontext``) for the block, then restores the previous one.

        :func:`pymimalloc.malloc` allocates from it meanwhile; other threads and tasks are unaffected, and
        blocks nest. The heap cannot be closed while a block holds it (RuntimeError). mimalloc's own
        thread default (``mi_malloc``) is never changed. Blocks may be left in any order (two generators,
        two tasks): the default is always the innermost block still held, and a block left from another
        context (a generator finalised elsewhere) stops counting at once. Single use.
        """
        return _core.HeapScope(self, _core.SCOPE_DEFAULT)

    def python_objects(self) -> HeapScope:
        """``with heap.python_objects():`` the Python objects the current context allocates inside the block
        (anything CPython allocates through ``PyObject_Malloc`` or ``PyMem_Malloc``) come from this heap.

        The context is the thread, or the asyncio task, as for :meth:`as_default` (a ContextVar): other
        threads and tasks are unaffected, blocks nest and may be left in any order, and a block left from
        another context stops counting at once. :attr:`live_blocks`, :attr:`live_bytes` (usable sizes),
        :meth:`blocks` and :meth:`stats` then show what the computation allocated and kept. The heap
        cannot be closed during the block (RuntimeError); closed later while objects live, it keeps their
        memory until the last of them is freed, as with Blocks. While a walk or snapshot holds the heap
        frozen, new objects come from Python's own mimalloc heap instead. Installs mimalloc's hook (not
        :func:`pymimalloc.install`'s routing) if it is not in place. Single use.
        """
        hook_for_python_objects()
        return _core.HeapScope(self, _core.SCOPE_OBJECTS)

    # -- walking ------------------------------------------------------------------------------------
    def areas(self) -> list[Area]:
        """A new list of the heap's areas (``mi_heap_visit_blocks``), recorded at the time of the call."""
        return [area for area, _ in walk(self, False)]

    def blocks(self) -> list[BlockInfo]:
        """A new list of every live block of the heap, recorded at the time of the call.

        These are mimalloc's blocks: an aligned allocation may lie inside one, so its ``Block.address``
        can be after the ``BlockInfo.address`` of the block that holds it.
        """
        return [info for _, infos in walk(self, True) for info in infos]

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
        _core.heap_collect(self, force)

    def close(self) -> None:
        """Close the heap. Idempotent.

        With nothing allocated from the heap still alive, all its memory is released at once
        (``mi_heap_destroy``). Otherwise the live Blocks and arrays stay valid, the heap refuses new
        allocations, and its memory is released when the last of them is freed. Raises ValueError for the
        main heap, and RuntimeError during a visit or snapshot of this heap or while it is a default heap
        (``as_default``) or numpy's allocator (``numpy_allocator``).
        """
        status = _core.heap_close(self, _core.CLOSE_AUTO)
        if status != _core.ECLOSED:  # closing twice is fine
            _core.check(status, "close")
        self._unregister()

    def destroy(self) -> None:
        """Release all of the heap's memory at once (``mi_heap_destroy``), strictly.

        Raises BufferError while any Block or array allocated from it is alive (the heap stays open, and
        other threads' allocations are not disturbed), ValueError if it is already closed or is the main
        heap, RuntimeError as :meth:`close`.
        """
        _core.check(_core.heap_close(self, _core.CLOSE_DESTROY), "destroy")
        self._unregister()

    def delete(self) -> None:
        """Close the heap; live blocks stay valid until their owners free them (as :meth:`close`).

        Unlike :meth:`close` it raises ValueError if the heap is already closed. mimalloc's own
        ``mi_heap_delete`` is never called: in v3.4.3 it mishandles pages outside an arena (docs/reliability.md, "Never crash").
        """
        _core.check(_core.heap_close(self, _core.CLOSE_AUTO), "delete")
        self._unregister()

    def _unregister(self) -> None:
        _core.heap_forget(self)

    def __enter__(self) -> Heap:
        self._check_open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.is_main:
            self.close()

    def __repr__(self) -> str:
        state = {_core.STATE_OPEN: "open", _core.STATE_FROZEN: "frozen"}.get(
            _core.heap_state(self), "closed"
        )
        if self.is_main:
            state = "main" if state == "open" else "main " + state
        return f"<pymimalloc.Heap {state} live_blocks={self.live_blocks} live_bytes={self.live_bytes}>"


def main_heap() -> Heap:
    """mimalloc's main heap (the one ``mi_malloc`` uses). It can be allocated from but not closed."""
    heap = _main_heap.get("heap")
    if heap is None:
        # No lock: a finalizer, signal handler or profile hook run while main_heap() held one called main_heap() and
        # waited for its own thread for good. The first object published stays (setdefault is one step under the
        # GIL); another made meanwhile is dropped: each holds a reference to the one main heap of the C glue.
        made = Heap.__new__(Heap)
        made._open_main()
        made._arena = None
        heap = _main_heap.setdefault("heap", made)
    return heap


def heap_of(obj: Block | int | Any) -> Heap | None:
    """The open Heap holding ``obj`` (a Block, an int address, or a buffer), or None.

    Blocks and arrays that outlived their closed heap belong to no open heap: None. Addresses not managed
    by mimalloc (or by a heap pymimalloc does not know) give None, never a crash.
    """
    address = address_of(obj)
    if address is None:
        return None
    heap_id = _core.heap_of_address(address)
    if heap_id == 0:
        return None
    if heap_id == _core.heap_id(main_heap()):
        return main_heap()
    heap: Heap | None = _core.heap_object(heap_id)
    # a close interrupted between the C close and its _unregister (a signal's exception) leaves the registry naming
    # the heap until the next close() or its end: never name a closed heap
    return None if heap is None or heap.closed else heap


def default_heap() -> Heap:
    """The current context's default heap: the innermost ``as_default()`` heap, else the main heap."""
    heap: Heap | None = _core.default_heap_in_context()
    return main_heap() if heap is None else heap


def malloc(size: int) -> Block:
    """Allocate a Block of ``size`` bytes from the current context's default heap (see ``Heap.as_default``).

    Raises as :meth:`Heap.malloc`: ValueError if that heap was closed meanwhile."""
    return default_heap().malloc(size)


# -- the slow paths of HeapBase's C methods, registered once (csrc/pmi_python.c calls them by position) ------
def _allocate_slow(heap: Heap, size: object, zero: bool) -> Block:
    """malloc/zalloc for sizes the C fast path does not take: validated here, then allocated in C."""
    return heap._allocate(as_size(size), 0, zero)


def _realloc_slow(heap: Heap, block: Block, size: object) -> Block:
    return heap.realloc(block, as_size(size))


def _allocation_failed(heap: Heap, size: int) -> None:
    """Raise what the calling thread's last failed allocation from ``heap`` means."""
    _core.check(_core.allocation_failure(), f"cannot allocate {size} bytes")


def _raise_if_unusable(heap: Heap) -> None:
    heap._check_usable()


_core.register_slow_paths(_allocate_slow, _realloc_slow, _allocation_failed, _raise_if_unusable, empty_slow, zeros_slow)
