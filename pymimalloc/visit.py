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
from ._process import ProcessLocal

if TYPE_CHECKING:
    from .heap import Heap

__all__ = ["Area", "BlockInfo", "Snapshot", "VisitCallback"]


@dataclasses.dataclass(frozen=True, slots=True)
class Area:
    """An area of a heap: a run of blocks of one size (a mimalloc page). Sizes in bytes.

    ``used`` is mimalloc's count of the page as its owning thread last settled it: blocks that another thread freed
    since still count until that thread collects the page (its next allocations there, ``heap.collect(force=True)``
    in it, or its exit). :meth:`Heap.blocks` lists only the blocks still alive."""

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


def walk(heap: Heap, visit_blocks: bool) -> list[tuple[Area, list[BlockInfo]]]:
    """Record the areas of a heap, each with its live blocks (empty unless ``visit_blocks``). The heap is
    frozen for the walk, in C; ValueError if it is closed."""
    area_fields, addresses, area_indices = _core.heap_walk(heap, visit_blocks)
    areas = [Area(*fields) for fields in area_fields]
    # the hot loop of a walk, in C: BlockInfo's slots set directly (its frozen __init__ costs more than the rest)
    return list(zip(areas, _core.block_infos(BlockInfo, areas, addresses, area_indices)))


def visit(heap: Heap, callback: VisitCallback, visit_blocks: bool) -> bool:
    """Call ``callback(area, None)`` for each area and ``callback(area, block)`` for each live block, with the
    heap frozen throughout. Returns False as soon as a callback returns a falsy value, else True. Exceptions
    propagate."""
    with _core.HeapScope(heap, _core.SCOPE_FREEZE):
        for area, found in walk(heap, visit_blocks):
            if not callback(area, None):
                return False
            for info in found:
                if not callback(area, info):
                    return False
    return True


class Snapshot(ProcessLocal, _core.HeapScope):
    """A consistent view of a heap's areas and live blocks, valid while its ``with`` block runs.

    Inside the ``with`` block the heap is frozen, so every address in the snapshot stays valid. After it
    the snapshot is ``stale``: its figures remain readable but describe the past. A freeze HeapScope whose
    ``__enter__`` and ``__exit__`` are C: the walk runs inside ``__enter__`` (``_entered``; if it raises, the
    heap is thawed before the exception leaves), and the thaw is one call that no interrupt can split.
    """

    __slots__ = ("areas", "blocks")
    areas: tuple[Area, ...]
    blocks: tuple[BlockInfo, ...]
    _unshareable_why = "it holds its heap frozen; copy or pickle its areas and blocks (plain dataclasses)"

    def __new__(cls, heap: Heap) -> Snapshot:
        self = super().__new__(cls, heap, _core.SCOPE_FREEZE)  # the freeze: taken and let go in C, once
        self.areas = ()
        self.blocks = ()
        return self

    @property
    def live_blocks(self) -> int:
        """Number of live blocks the snapshot saw."""
        return len(self.blocks)

    @property
    def live_bytes(self) -> int:
        """Bytes in the live blocks the snapshot saw (block sizes, so at least the requested sizes)."""
        return sum(info.size for info in self.blocks)

    @property
    def stale(self) -> bool:
        """True once the ``with`` block ended: the figures remain readable but describe the past."""
        return self.entered and not self.held

    def _entered(self) -> Snapshot:  # called by the C __enter__, the heap frozen: what `as snap` binds
        found = walk(self.heap, True)
        self.areas = tuple(area for area, _ in found)
        self.blocks = tuple(info for _, infos in found for info in infos)
        return self

    def __repr__(self) -> str:
        state = "stale" if self.stale else ("live" if self.held else "not taken")
        return f"<pymimalloc.Snapshot {state} areas={len(self.areas)} live_blocks={self.live_blocks}>"
