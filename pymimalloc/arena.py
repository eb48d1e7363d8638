"""Arenas: address ranges reserved from the OS, which heaps can be confined to.

mimalloc v3.4.3 has no public way to give an arena back to the OS, so an Arena's memory stays reserved
for the life of the process. ``release()`` retires the Python object: no new heap can be placed in it,
while heaps already in it keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _core
from ._process import ProcessLocal
from ._validate import as_size
from .block import address_of

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Arena"]


class Arena(ProcessLocal):
    """An exclusive arena of ``size`` bytes (``mi_reserve_os_memory_ex``).

    Only heaps created with ``Heap(arena=...)`` allocate from it, and they allocate nowhere else: when it
    is full, allocation raises MemoryError. ``commit`` commits the memory up front; ``allow_large`` lets
    mimalloc use large OS pages. Raises ValueError for a size below :meth:`min_size`, MemoryError if the
    OS refuses the reservation.
    """

    __slots__ = ("_id", "_address", "_size", "_released", "__weakref__")
    _unshareable_why = "it is one reservation of address space, and its memory lives only in this process"

    def __init__(self, size: int, commit: bool = False, allow_large: bool = False) -> None:
        size = as_size(size)
        if size < self.min_size():
            raise ValueError(f"an arena needs at least {self.min_size()} bytes (mi_arena_min_size), got {size}")
        if size > self.max_size():
            raise ValueError(
                f"an arena holds at most {self.max_size()} bytes (mimalloc v3's MI_ARENA_MAX_SIZE), got {size}; "
                "reserve several arenas, or let heaps grow without one"
            )
        granule = _core.arena_granularity()
        rounded = -(-size // granule) * granule  # mimalloc manages whole chunks: round up, never down
        self._id: int  # mimalloc's arena id; C places a heap only in an arena it reserved
        self._id, self._address, self._size = _core.arena_reserve(rounded, bool(commit), bool(allow_large))
        self._released = False
        if self._size < size:  # pragma: no cover - a promise, checked rather than assumed
            raise MemoryError(f"mimalloc reserved {self._size} bytes for an arena of {size} bytes")

    @staticmethod
    def max_size() -> int:
        """The largest arena mimalloc v3 manages as one, in bytes (16 GiB on 64-bit systems)."""
        return _core.arena_max_size()

    @staticmethod
    def min_size() -> int:
        """The smallest arena mimalloc accepts, in bytes (``mi_arena_min_size``)."""
        return _core.arena_min_size()

    @property
    def address(self) -> int:
        """Start of the arena's memory."""
        return self._address

    @property
    def size(self) -> int:
        """Bytes the arena spans: at least the size asked for, rounded up to mimalloc's arena chunks."""
        return self._size

    @property
    def released(self) -> bool:
        """True once :meth:`release` ran: no new heap can be placed in the arena."""
        return self._released

    def contains(self, obj: object) -> bool:
        """Whether ``obj`` (a Block, an int address or a buffer) lies in this arena."""
        address = address_of(obj)
        return address is not None and _core.arena_contains(self._id, address)

    __contains__ = contains

    def _id_for_new_heap(self) -> int:
        if self._released:
            raise ValueError("the arena is released; reserve a new Arena")
        return self._id

    def release(self) -> None:
        """Retire the arena: later ``Heap(arena=self)`` raises ValueError. Idempotent. Heaps already in it
        keep working, and the memory stays reserved (mimalloc cannot give an arena back)."""
        self._released = True

    def __enter__(self) -> Arena:
        self._id_for_new_heap()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "open"
        return f"<pymimalloc.Arena {state} {self._size} bytes at {self._address:#x}>"


def id_for_new_heap(arena: Arena) -> int:
    """The arena's mimalloc id (an int), for ``Heap(arena=...)``; ValueError once the arena is released."""
    return arena._id_for_new_heap()
