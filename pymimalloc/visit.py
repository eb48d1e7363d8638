"""Walking a heap's areas and live blocks (``mi_heap_visit_blocks``), safely.

mimalloc's walk assumes nothing else touches the heap meanwhile (mimalloc#369). So a walk first freezes
the heap: allocations and explicit frees raise RuntimeError in every thread, and blocks dropped meanwhile
(garbage collection, other threads) are freed when the heap thaws. The walk itself records areas and
blocks in C without calling Python; callbacks then run over that record while the heap is still frozen,
so every address they see stays valid until the walk ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import _core

if TYPE_CHECKING:
    from types import TracebackType

    from .heap import Heap

__all__ = ["Area", "BlockInfo", "Snapshot", "VisitCallback"]


@dataclasses.dataclass(frozen=True, slots=True)
class Area:
    """An area of a heap: a run of blocks of one size (a mimalloc page). Sizes in bytes."""

    address: int  #: start of the area's blocks
    reserved: int  #: bytes reserved (virtual)
    committed: int  #: bytes committed
    used: int  #: number of blocks in use (a count, not bytes)
    block_size: int  #: bytes per block
    full_block_size: int  #: bytes per block including padding and metadata


@dataclasses.dataclass(frozen=True, slots=True)
class BlockInfo:
    """A live block found by a walk: its address and size (the area's block size, in bytes)."""

    address: int
    size: int
    area: Area


VisitCallback = Callable[[Area, "BlockInfo | None"], Any]


# These take the heap's handle (a ``pmi_heap_t*`` cdata), which heap.py passes: no module reads
# another's private attributes.
def freeze(handle: Any, what: str) -> None:
    """Freeze the heap in C (Block.free asks C whether its heap is frozen)."""
    _core.heap_freeze(handle, what)


def thaw(handle: Any) -> None:
    _core.heap_thaw(handle)


@contextlib.contextmanager
def frozen(handle: Any) -> Iterator[None]:
    """Hold the heap still (see the module docstring). Nests; raises ValueError if the heap is closed."""
    freeze(handle, "freezing the heap for a walk")
    try:
        yield
    finally:
        thaw(handle)


# object.__new__ and BlockInfo's slot setters, which bypass the frozen dataclass's __setattr__
_BLOCKINFO_FAST: tuple[Any, Any, Any, Any] = (object.__new__, *(vars(BlockInfo)[name].__set__ for name in ("address", "size", "area")))


def walk(handle: Any, visit_blocks: bool) -> list[tuple[Area, list[BlockInfo]]]:
    """Record the areas of a frozen heap, each with its live blocks (empty unless ``visit_blocks``)."""
    area_fields, addresses, area_indices = _core.heap_walk(handle, visit_blocks)
    areas: list[tuple[Area, list[BlockInfo]]] = [(Area(*fields), []) for fields in area_fields]
    # the hot loop of a walk: BlockInfo's slots set directly (its frozen __init__ costs more than the rest)
    new, set_address, set_size, set_area = _BLOCKINFO_FAST
    for address, index in zip(addresses, area_indices):
        area, found = areas[index]
        info = new(BlockInfo)
        set_address(info, address)
        set_size(info, area.block_size)
        set_area(info, area)
        found.append(info)
    return areas


def visit(handle: Any, callback: VisitCallback, visit_blocks: bool) -> bool:
    """Call ``callback(area, None)`` for each area and ``callback(area, block)`` for each live block.

    Returns False as soon as a callback returns a falsy value, else True. Exceptions propagate.
    """
    with frozen(handle):
        for area, found in walk(handle, visit_blocks):
            if not callback(area, None):
                return False
            for info in found:
                if not callback(area, info):
                    return False
    return True


class Snapshot(_core.ProcessLocal):
    """A consistent view of a heap's areas and live blocks, valid while its ``with`` block runs.

    Inside the ``with`` block the heap is frozen, so every address in the snapshot stays valid. After it
    the snapshot is ``stale``: its figures remain readable but describe the past.
    """

    __slots__ = ("_heap", "_handle", "areas", "blocks", "stale", "_entered", "_frozen")
    _unshareable_why = "it holds its heap frozen; copy or pickle its areas and blocks (plain dataclasses)"

    def __init__(self, heap: Heap, handle: Any) -> None:
        self._heap = heap
        self._handle = handle
        self.areas: tuple[Area, ...] = ()
        self.blocks: tuple[BlockInfo, ...] = ()
        self.stale = False
        self._entered = False
        self._frozen = False

    @property
    def live_blocks(self) -> int:
        """Number of live blocks the snapshot saw."""
        return len(self.blocks)

    @property
    def live_bytes(self) -> int:
        """Bytes in the live blocks the snapshot saw (block sizes, so at least the requested sizes)."""
        return sum(info.size for info in self.blocks)

    def __enter__(self) -> Snapshot:
        if self._entered:
            raise RuntimeError("a snapshot can be taken only once; call heap.snapshot() again")
        self._entered = True
        freeze(self._handle, "snapshot")
        try:
            found = walk(self._handle, True)
        except BaseException:
            thaw(self._handle)
            raise
        self._frozen = True
        self.areas = tuple(area for area, _ in found)
        self.blocks = tuple(info for _, infos in found for info in infos)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # thaws exactly once, and only what this snapshot froze (never-entered or repeated exits do nothing)
        if self._frozen:
            self._frozen = False
            self.stale = True
            thaw(self._handle)

    def __del__(self) -> None:
        # a snapshot entered by hand and then dropped must not leave its heap frozen for good
        if getattr(self, "_frozen", False):
            self.__exit__(None, None, None)

    def __repr__(self) -> str:
        state = "stale" if self.stale else ("live" if self._entered else "not taken")
        return f"<pymimalloc.Snapshot {state} areas={len(self.areas)} live_blocks={self.live_blocks}>"
