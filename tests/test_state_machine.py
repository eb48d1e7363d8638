"""A hypothesis state machine over the whole public API, checked against a model after every step.

The model knows every live allocation (Blocks, blocks kept alive only by a view, numpy array data) with
its heap and fill pattern. After each step, for every open heap, the visitor's set of live addresses must
equal the model's, and the contents of live blocks must match their patterns. Misuse steps are part of
the machine and must raise the documented exceptions.
"""
from __future__ import annotations

import bisect
import gc
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

import pymimalloc

EXAMPLES = int(os.environ.get("PYMIMALLOC_STATE_MACHINE_EXAMPLES", "60"))
# Deterministic by default, so CI is reproducible; PYMIMALLOC_STATE_MACHINE_EXPLORE=1 draws new examples.
EXPLORE = os.environ.get("PYMIMALLOC_STATE_MACHINE_EXPLORE") == "1"
SIZES = st.one_of(st.integers(0, 300), st.sampled_from([1024, 4096, 20000, 70000, 1 << 20, 3 << 20]))


class Allocation:
    """The model of one live allocation: who holds it, where it lives, what it must contain."""

    def __init__(self, heap: pymimalloc.Heap, obj: object, size: int, fill: int) -> None:
        self.heap, self.obj, self.size, self.fill = heap, obj, size, fill
        self.views: list[memoryview] = []

    @property
    def address(self) -> int:
        if isinstance(self.obj, pymimalloc.Block):
            return self.obj.address
        return int(self.obj.__array_interface__["data"][0])  # type: ignore[attr-defined]

    def contents_ok(self) -> bool:
        if isinstance(self.obj, pymimalloc.Block):
            return bytes(self.obj.view) == bytes([self.fill]) * self.size
        return bool((self.obj == self.fill).all())  # type: ignore[attr-defined]


class PymimallocMachine(RuleBasedStateMachine):
    heaps = Bundle("heaps")
    allocations = Bundle("allocations")

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, Allocation] = {}  # id(Allocation) -> Allocation
        self.orphans: list[Allocation] = []  # Blocks dropped while a view keeps their memory
        self.fill = 0
        self.closed: set[int] = set()

    def _next_fill(self) -> int:
        self.fill = self.fill % 250 + 1
        return self.fill

    def _open(self, heap: pymimalloc.Heap) -> bool:
        return id(heap) not in self.closed

    # -- heaps ------------------------------------------------------------------------------------
    @rule(target=heaps)
    def new_heap(self) -> pymimalloc.Heap:
        return pymimalloc.Heap()

    @rule(heap=heaps)
    def close(self, heap: pymimalloc.Heap) -> None:
        heap.close()
        heap.close()  # idempotent
        self.closed.add(id(heap))
        assert heap.closed

    @rule(heap=heaps)
    def destroy(self, heap: pymimalloc.Heap) -> None:
        in_use = any(a.heap is heap for a in self.live.values()) or any(a.heap is heap for a in self.orphans)
        if not self._open(heap):
            with pytest.raises(ValueError):
                heap.destroy()
        elif in_use:
            with pytest.raises(BufferError):
                heap.destroy()
            assert not heap.closed
        else:
            heap.destroy()
            self.closed.add(id(heap))

    @rule(heap=heaps)
    def delete(self, heap: pymimalloc.Heap) -> None:
        if self._open(heap):
            heap.delete()
            self.closed.add(id(heap))
        else:
            with pytest.raises(ValueError):
                heap.delete()

    @rule(heap=heaps, force=st.booleans())
    def collect(self, heap: pymimalloc.Heap, force: bool) -> None:
        if self._open(heap):
            heap.collect(force)
        else:
            with pytest.raises(ValueError):
                heap.collect(force)
        pymimalloc.collect(force)

    # -- allocation ---------------------------------------------------------------------------------
    @rule(target=allocations, heap=heaps, size=SIZES,
          how=st.sampled_from(["malloc", "zalloc", "calloc", "malloc_aligned", "zalloc_aligned"]),
          alignment=st.sampled_from([1, 8, 64, 4096]))
    def allocate(self, heap: pymimalloc.Heap, size: int, how: str, alignment: int) -> object:
        args = {"malloc": (size,), "zalloc": (size,), "calloc": (1, size),
                "malloc_aligned": (size, alignment), "zalloc_aligned": (size, alignment)}[how]
        if not self._open(heap):
            with pytest.raises(ValueError):
                getattr(heap, how)(*args)
            return None
        block = getattr(heap, how)(*args)
        assert block.size == size and block in heap
        if how.endswith("aligned"):
            assert block.address % alignment == 0
        if how in ("zalloc", "calloc", "zalloc_aligned"):
            assert bytes(block.view) == bytes(size)
        allocation = Allocation(heap, block, size, self._next_fill())
        block.view[:] = bytes([allocation.fill]) * size
        self.live[id(allocation)] = allocation
        return allocation

    @rule(target=allocations, heap=heaps, n=st.integers(0, 5000),
          how=st.sampled_from(["zeros", "full", "allocator"]))
    def array(self, heap: pymimalloc.Heap, n: int, how: str) -> object:
        if not self._open(heap):
            with pytest.raises(ValueError):
                heap.zeros(n)
            return None
        fill = self._next_fill()
        if how == "zeros":
            arr = heap.zeros(n, dtype=np.uint8)
            assert not arr.any()
            arr[:] = fill
        elif how == "full":
            arr = heap.full(n, fill, dtype=np.uint8)
        else:
            with heap.numpy_allocator():
                arr = np.full(n, fill, dtype=np.uint8) + 0  # the temporary is freed again
        allocation = Allocation(heap, arr, n, fill)
        self.live[id(allocation)] = allocation
        return allocation

    @rule(allocation=allocations, size=SIZES)
    def realloc(self, allocation: Allocation | None, size: int) -> None:
        if allocation is None or id(allocation) not in self.live:
            return
        block = allocation.obj
        if not isinstance(block, pymimalloc.Block):
            return
        heap = allocation.heap
        if not self._open(heap):
            with pytest.raises(ValueError):
                heap.realloc(block, size)
            return
        if allocation.views:
            with pytest.raises(BufferError):
                heap.realloc(block, size)
            return
        grown = heap.realloc(block, size)
        assert block.freed
        keep = min(size, allocation.size)
        assert bytes(grown.view[:keep]) == bytes([allocation.fill]) * keep
        grown.view[:] = bytes([allocation.fill]) * size
        allocation.obj, allocation.size = grown, size

    @rule(allocation=allocations)
    def take_view(self, allocation: Allocation | None) -> None:
        if allocation is not None and id(allocation) in self.live and isinstance(allocation.obj, pymimalloc.Block):
            allocation.views.append(allocation.obj.view[:])

    @rule(allocation=allocations)
    def release_views(self, allocation: Allocation | None) -> None:
        if allocation is not None:
            for view in allocation.views:
                view.release()
            allocation.views.clear()
            if allocation in self.orphans:
                self.orphans.remove(allocation)

    @rule(allocation=consumes(allocations))
    def free(self, allocation: Allocation | None) -> None:
        if allocation is None or id(allocation) not in self.live:
            return
        obj = allocation.obj
        if isinstance(obj, pymimalloc.Block):
            if allocation.views:
                with pytest.raises(BufferError):
                    obj.free()
                self.orphans.append(allocation)  # we let go of the Block; its views keep the memory
                del self.live[id(allocation)]
                allocation.obj = None
                return
            obj.free()
            obj.free()  # idempotent
            with pytest.raises(ValueError):
                obj.view
        del self.live[id(allocation)]
        allocation.obj = None  # an array is freed when its last reference goes

    @rule(allocation=consumes(allocations))
    def drop(self, allocation: Allocation | None) -> None:
        """Forget the object: garbage collection frees it (or its views keep it)."""
        if allocation is None or id(allocation) not in self.live:
            return
        del self.live[id(allocation)]
        if allocation.views:
            self.orphans.append(allocation)
        allocation.obj = None

    @rule()
    def collect_garbage(self) -> None:
        gc.collect()

    # -- walks and options ----------------------------------------------------------------------------
    @rule(heap=heaps)
    def snapshot(self, heap: pymimalloc.Heap) -> None:
        if not self._open(heap):
            with pytest.raises(ValueError):
                with heap.snapshot():
                    pass
            return
        with heap.snapshot() as snap:
            with pytest.raises(RuntimeError):
                heap.malloc(8)
            mine = [a for a in self.live.values() if a.heap is heap and isinstance(a.obj, pymimalloc.Block)]
            if mine:
                with pytest.raises(RuntimeError):
                    mine[0].obj.free()
            assert snap.live_blocks == len(snap.blocks)
        assert snap.stale

    @rule(heap=heaps, stop_after=st.integers(0, 5))
    def visit(self, heap: pymimalloc.Heap, stop_after: int) -> None:
        if not self._open(heap):
            return
        calls: list[object] = []
        finished = heap.visit(lambda area, info: calls.append(info) or len(calls) <= stop_after)
        assert finished == (len(calls) <= stop_after)

    @rule(delay=st.sampled_from([-1, 0, 10, 1000]))
    def override_option(self, delay: int) -> None:
        before = pymimalloc.options["purge_delay"]
        with pymimalloc.options.override(purge_delay=delay):
            assert pymimalloc.options["purge_delay"] == delay
        assert pymimalloc.options["purge_delay"] == before

    # -- misuse -------------------------------------------------------------------------------------
    @rule(heap=heaps, size=st.sampled_from([-1, 2**64, 1.5, None, True]))
    def bad_size(self, heap: pymimalloc.Heap, size: object) -> None:
        expected = {-1: ValueError, 2**64: MemoryError}.get(size, TypeError)  # type: ignore[call-overload]
        with pytest.raises(expected):
            heap.malloc(size)  # type: ignore[arg-type]

    @rule(address=st.one_of(st.integers(-(2**70), 2**70), st.integers(0, 2**47)))
    def foreign_address(self, address: int) -> None:
        owner = pymimalloc.heap_of(address)
        assert owner is None or isinstance(owner, pymimalloc.Heap)

    @rule(a=allocations, heap=heaps)
    def realloc_into_the_wrong_heap(self, a: Allocation | None, heap: pymimalloc.Heap) -> None:
        if a is None or id(a) not in self.live or not isinstance(a.obj, pymimalloc.Block):
            return
        if a.heap is not heap and self._open(heap) and self._open(a.heap):
            with pytest.raises(ValueError):
                heap.realloc(a.obj, 8)

    # -- invariants ---------------------------------------------------------------------------------
    @invariant()
    def visitor_sees_exactly_the_model(self) -> None:
        by_heap: dict[int, list[int]] = {}
        heaps: dict[int, pymimalloc.Heap] = {}
        for allocation in [*self.live.values(), *self.orphans]:
            if self._open(allocation.heap):
                heaps[id(allocation.heap)] = allocation.heap
                if allocation.obj is not None:
                    by_heap.setdefault(id(allocation.heap), []).append(allocation.address)
        for key, heap in heaps.items():
            walked = sorted((info.address, info.size) for info in heap.blocks())
            starts = [start for start, _ in walked]
            expected = by_heap.get(key, [])
            for address in expected:
                # an aligned allocation may lie inside a larger mimalloc block (debug and secure builds pad
                # and randomise), so find the block that contains the address
                i = bisect.bisect_right(starts, address) - 1
                assert i >= 0 and address < walked[i][0] + max(walked[i][1], 1), hex(address)
            orphaned = sum(1 for a in self.orphans if a.heap is heap)
            assert len(walked) == len(expected) + orphaned

    @invariant()
    def contents_match_their_patterns(self) -> None:
        for allocation in self.live.values():
            assert allocation.contents_ok()

    def teardown(self) -> None:
        for allocation in [*self.live.values(), *self.orphans]:
            for view in allocation.views:
                view.release()
        self.live.clear()
        self.orphans.clear()
        gc.collect()


PymimallocMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None, derandomize=not EXPLORE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPymimallocMachine = PymimallocMachine.TestCase
