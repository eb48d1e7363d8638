"""Blocks: memory allocated from a Heap, owned by a Python object.

A Block's memory is freed when nothing in Python can reach it any more: not the Block, and no memoryview
(or anything built on one, such as a numpy array over ``block.view``). ``free()`` drops the Block's own
hold at once and refuses, with BufferError, while views are exported; realloc moves the memory and so
refuses in the same case. No Python object can ever point at freed memory.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from . import _core
from ._core import ffi, lib

if TYPE_CHECKING:
    from types import TracebackType

    from .heap import Heap

__all__ = ["Block", "usable_size", "good_size", "address_of"]

# Serialises what must not interleave across threads: creating a block's first exporter, checking for
# exported views, and moving a block (realloc). Plain allocation and free never take it.
_exports_lock = _core.fork_safe_lock()

# sys.getrefcount(block._exporter) when only the Block holds it: the slot, and getrefcount's argument.
_EXPORTER_OWN_REFS = 2


class Block:
    """A block of ``size`` bytes allocated from a :class:`~pymimalloc.Heap`.

    Blocks come from ``Heap.malloc()`` and its siblings, never from this constructor. The Block owns its
    memory: it is freed by :meth:`free`, by leaving a ``with block:`` statement, or when the Block is
    garbage-collected, whichever comes first, but never while a view of it is alive.
    """

    __slots__ = ("_record", "_heap", "_exporter", "__weakref__")

    _record: Any  # pmi_block_t* with destructor pmi_block_release, or None once freed
    _heap: Heap
    _exporter: Any  # cffi buffer over the data, created on first use of .view

    def __init__(self) -> None:
        raise TypeError("Blocks are allocated with Heap.malloc(), zalloc(), calloc() or malloc_aligned()")

    def _live(self) -> Any:
        record = self._record
        if record is None:
            raise ValueError("the block is freed")
        return record

    def _views_exported(self) -> bool:
        return self._exporter is not None and sys.getrefcount(self._exporter) > _EXPORTER_OWN_REFS

    def _detach(self) -> None:
        self._record = None
        self._exporter = None

    # -- what it is ---------------------------------------------------------------------------------
    @property
    def address(self) -> int:
        """The block's start address (an int). Raises ValueError once freed."""
        return int(ffi.cast("uintptr_t", self._live().data))

    @property
    def size(self) -> int:
        """The number of bytes requested. Raises ValueError once freed."""
        return int(self._live().size)

    @property
    def usable_size(self) -> int:
        """The bytes actually available in the block (>= size), as mimalloc reports. ValueError once freed."""
        return int(lib.mi_usable_size(self._live().data))

    @property
    def heap(self) -> Heap:
        """The Heap the block was allocated from (it may be closed since)."""
        return self._heap

    @property
    def freed(self) -> bool:
        """True once the Block has given up its memory."""
        return self._record is None

    @property
    def view(self) -> memoryview:
        """A new writable memoryview of the block's ``size`` bytes (format ``B``).

        The view keeps the memory alive even if the Block is dropped; ``free()`` and ``Heap.realloc()``
        raise BufferError until every view is released. Raises ValueError once freed.
        """
        with _exports_lock:
            record = self._live()
            exporter = self._exporter
            if exporter is None:
                # The data pointer's destructor is a bound method of the record, so every view keeps the
                # record (and thus the memory) alive; the method itself does nothing when called.
                data = ffi.gc(ffi.cast("char *", record.data), record.__eq__)
                exporter = self._exporter = ffi.buffer(data, record.size)
            return memoryview(exporter)

    # -- copies ---------------------------------------------------------------------------------------
    def __copy__(self) -> Block:
        """A new Block from the same heap holding a copy of this block's contents, like copying a bytearray.

        Raises ValueError if this block is freed or its heap is closed, as ``heap.malloc`` does."""
        twin = self._heap.malloc(self._live().size)
        with _exports_lock:  # a realloc in another thread must not move the memory while we copy it
            record = self._live()
            ffi.memmove(twin._record.data, record.data, min(record.size, twin.size))
        return twin

    def __deepcopy__(self, memo: dict[int, Any]) -> Block:
        return self.__copy__()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("a Block cannot be pickled: its memory lives only in this process; pickle bytes(block.view)")

    # -- giving it back ------------------------------------------------------------------------------
    def free(self) -> None:
        """Give the memory back to its heap. Idempotent.

        Raises BufferError while a view of the block is exported (release the views first), as
        ``mmap.close()`` does, and RuntimeError while a visit or snapshot of its heap is in progress.
        """
        if self._record is None:
            return
        if self._heap._freezes:
            raise RuntimeError("cannot free into a heap while a visit or snapshot of it is in progress")
        if self._exporter is not None:
            with _exports_lock:
                if self._views_exported():
                    raise BufferError("cannot free a Block while views of it are exported; release them first")
            self._exporter = None
        # Dropping the record frees the memory (its cdata destructor), unless a view still holds it.
        self._record = None

    def __enter__(self) -> Block:
        self._live()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.free()

    def __repr__(self) -> str:
        record = self._record
        if record is None:
            return "<pymimalloc.Block freed>"
        address = int(ffi.cast("uintptr_t", record.data))
        return f"<pymimalloc.Block {record.size} bytes at {address:#x}>"


_new_block = object.__new__
_gc = ffi.gc
_release = lib.pmi_block_release


def _adopt(record: Any, heap: Heap) -> Block:
    """Wrap a fresh ``pmi_block_t*`` from C in a Block, which now owns it (internal; a hot path)."""
    block = _new_block(Block)
    block._record = _gc(record, _release)
    block._heap = heap
    block._exporter = None
    return block


def address_of(obj: object) -> int | None:
    """The address a Block, int or buffer stands for (see ``_core.address_of``). Freed Blocks raise ValueError."""
    if isinstance(obj, Block):
        return obj.address
    return _core.address_of(obj)


def usable_size(obj: Block | int | Any) -> int:
    """The usable bytes of the mimalloc block at ``obj`` (a Block, an address, or a buffer).

    For a Block or the start of a block, mimalloc's usable size (``mi_usable_size``). For an address or
    buffer inside a block, the bytes from there to the end of the block's usable part, so a slice
    ``view[1:]`` gives one byte less than its block. Safe for any address, a freed block's included.
    Raises ValueError if the address is not in memory managed by mimalloc, TypeError for other objects.
    """
    if isinstance(obj, Block):
        return obj.usable_size
    address = _core.address_of(obj)
    size = 0 if address is None else lib.pmi_usable_size(address)
    if size == 0:
        raise ValueError(f"{obj!r} is not an address of a block allocated by mimalloc")
    return int(size)


def good_size(size: int) -> int:
    """The allocation size in bytes mimalloc would actually use for a request of ``size`` bytes.

    Raises MemoryError when that size is more than mimalloc can allocate, as ``malloc`` would."""
    good = int(lib.mi_good_size(_core.as_size(size)))
    if good > _core.MAX_SIZE:
        raise MemoryError(f"size of {size} bytes rounds up to more than mimalloc can allocate ({_core.MAX_SIZE})")
    return good
