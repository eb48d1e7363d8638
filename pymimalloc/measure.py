"""``pymimalloc.measure()``: what a block of code allocated and kept, in Python objects, at a fraction of
tracemalloc's cost.

    with pymimalloc.measure() as m:
        work()
    print(m.kept, m.peak, m.blocks)   # or print(m)

It is :meth:`Heap.python_objects` on a fresh heap: every object the current thread (or asyncio task)
allocates inside the block comes from that heap, whose exact counters say what is still alive at the end
(``kept``, ``blocks``), the most that was alive at once (``peak``) and how many objects were made
(``allocations``). The heap is closed on exit; what the block kept stays valid, and the heap's memory goes
with the last of it. Sizes are mimalloc's usable sizes (a 40-byte request takes a 48-byte block).

What it does not see: other threads and tasks; memory that is not a Python object or buffer (the C
library's malloc, numpy's array data unless numpy allocates through Python, mmap); objects CPython hands out
again from its own free lists (floats, lists, dicts, tuples recently freed: no allocation happens); objects
made before the block, even when they grow inside it (a list's new item array comes from the heap that
serves the list's realloc, its old one); and, in a nested ``measure()`` (or ``python_objects()``), what the
inner block allocates, which the inner one counts. ``peak`` is None once another thread freed some of the
block's objects. While more than 1024 heaps that ever held Python objects still have some alive (a
measurement whose objects are kept counts until the last of them goes), a new one raises RuntimeError. tracemalloc sees all Python allocations with a traceback each; memray sees
every allocation of the process, native ones too. docs/allocator.md compares what each costs.
"""

from __future__ import annotations

from . import _core
from ._process import ProcessLocal
from .stats import format_size

__all__ = ["Measurement", "measure"]


class Measurement(ProcessLocal, _core.HeapScope):
    """What one ``with measure():`` block allocated. Read live inside the block; frozen at its end.
    Sizes in bytes.

    A ``python_objects()`` block of a fresh heap (a HeapScope), whose ``__enter__`` and ``__exit__`` are C: the
    block ends, the heap is let go and its counters are read (``final``) in one call, which no interrupt can
    split; the heap is closed after that (``_left``), or, if an interrupt came first or another thread was
    walking it, when the measurement goes.
    """

    __slots__ = ()
    _unshareable_why = "it holds its own heap and with-block; read its figures (kept, peak, blocks, allocations)"

    def __new__(cls) -> Measurement:
        from .allocator import hook_for_python_objects
        from .heap import Heap  # heap imports stats; measure is imported by the package after both

        hook_for_python_objects()  # as heap.python_objects() does
        return super().__new__(cls, Heap(), _core.SCOPE_OBJECTS)

    def _entered(self) -> Measurement:  # called by the C __enter__, the heap held: what `as m` binds
        return self

    def _left(self) -> None:  # called by the C __exit__, the heap let go and its counters read
        try:
            self.heap.close()  # what the block kept stays valid; the memory goes with the last of it
        except RuntimeError:
            pass  # another thread walks it (frozen): it closes when the measurement goes, as an unread one does

    def _now(self) -> tuple[int, int | None, int, int]:
        final: tuple[int, int | None, int, int] | None = self.final
        if final is None:  # not left (or, out of memory as it left, not recorded): read now
            if not self.entered:
                raise RuntimeError("measure() has not started: use it as `with pymimalloc.measure() as m:`")
            return self.counters  # read in C, as final was
        return final  # an interrupt before _left left the heap open: it closes when the measurement goes

    @property
    def kept(self) -> int:
        """Bytes of the objects made in the block that are still alive (at its end, once it ended)."""
        return self._now()[0]

    @property
    def peak(self) -> int | None:
        """The most bytes of the block's objects alive at one time; None if another thread freed some of them
        (the garbage collector run from another thread, a queue's consumer): pymimalloc counts per thread,
        and such frees leave no exact peak."""
        return self._now()[1]

    @property
    def blocks(self) -> int:
        """How many of the block's objects (and buffers) are still alive."""
        return self._now()[2]

    @property
    def allocations(self) -> int:
        """How many objects and buffers the block allocated in all."""
        return self._now()[3]

    def __repr__(self) -> str:
        if not self.entered:
            return "<pymimalloc.Measurement not started>"
        state = "running" if self.held else "done"
        return (f"<pymimalloc.Measurement {state} kept={self.kept} peak={self.peak} blocks={self.blocks} "
                f"allocations={self.allocations}>")

    def __str__(self) -> str:
        if not self.entered:
            return repr(self)
        peak = self.peak
        return (f"kept {format_size(self.kept)} in {self.blocks:,} blocks, "
                f"peak {'unknown (freed in another thread)' if peak is None else format_size(peak)}, "
                f"{self.allocations:,} allocations")


def measure() -> Measurement:
    """``with pymimalloc.measure() as m:`` counts the Python objects the current thread (or asyncio task)
    allocates in the block, in a heap of their own: ``m.kept``, ``m.peak``, ``m.blocks``, ``m.allocations``.
    Installs mimalloc's hook in front of Python's allocator if it is not there (new objects outside such
    blocks still come from Python's own allocator unless :func:`pymimalloc.install` routed them).
    Single use: RuntimeError if entered twice. It makes its heap when it is made (a HeapScope holds its heap
    from the start), so make it where it is entered: mimalloc keeps at most about 64,000 heaps open at once."""
    return Measurement()
