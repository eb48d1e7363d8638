"""A hypothesis state machine over the whole public API, driving several threads, checked against a model
after every step.

The model knows every live allocation (Blocks, blocks kept alive only by a view, numpy array data, frees
deferred by a freeze) with its heap and fill pattern. After each step, for every open heap, the visitor's
set of live addresses must equal the model's, and the contents of live blocks must match their patterns.

Most steps run in a thread the machine picks: the main thread or one of three persistent worker threads.
So state that belongs to a thread lives in a real other thread across steps: an ``as_default()`` block
(which a later step may leave from yet another thread), a snapshot that holds its heap frozen, a numpy
allocator pin. Other steps are races, run in all threads at once: a close against frees, walks and
``heap_of``; two walks of one heap; a walk of the main heap against heaps closing. And a step forks, and
checks in the child that every heap still works and every block still holds its pattern. Misuse steps are
part of the machine and must raise the documented exceptions; a worker that hangs fails the step.
"""
from __future__ import annotations

import bisect
import copy
import gc
import os
import pickle
import threading
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

import pymimalloc
from threads import Worker, outcome

EXAMPLES = int(os.environ.get("PYMIMALLOC_STATE_MACHINE_EXAMPLES", "60"))
# Deterministic by default, so CI is reproducible; PYMIMALLOC_STATE_MACHINE_EXPLORE=1 draws new examples.
EXPLORE = os.environ.get("PYMIMALLOC_STATE_MACHINE_EXPLORE") == "1"
SIZES = st.one_of(st.integers(0, 300), st.sampled_from([1024, 4096, 20000, 70000, 1 << 20, 3 << 20]))
WORKERS = 3
WHERE = st.integers(0, WORKERS)  # 0: the main thread; 1..WORKERS: a worker thread
# Which held item a step releases, modulo how many there are. Drawn as a rule argument, never from the
# machine's state: races make that state differ between runs, and hypothesis needs the same draws.
INDEX = st.integers(0, 7)
# options a step may set and leave set for later steps (restored at teardown), with values to try
OPTION_VALUES = {"purge_delay": [0, -1, 10], "page_full_retain": [-1, 0, 8], "arena_eager_commit": [0, 1],
                 "page_reclaim_on_free": [-1, 1], "generic_collect": [1, 100], "purge_decommits": [0]}


_ARENA: pymimalloc.Arena | None = None
HUGE = 512 * 1024  # HeapStats.huge_bytes counts the blocks asked for above this many bytes


def holds(area: pymimalloc.Area, address: int) -> bool:
    """Whether ``address`` lies in ``area``'s reserved bytes."""
    return area.address <= address < area.address + area.reserved


def huge_part(size: int) -> int:
    """What a block of ``size`` counted bytes adds to ``huge_bytes``."""
    return size if size > HUGE else 0


def fork_and_check(in_the_child: Callable[[], None]) -> None:
    """Fork; in the child run ``in_the_child`` and walk the main heap, and report through the exit status alone (never
    return into pytest); the parent asserts the child passed."""
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a threaded process may deadlock the child: that is what the fork steps
        # check does not happen (the child must exit, within the step's timeout)
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            in_the_child()
            list(pymimalloc.main_heap().blocks())
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


class Allocation:
    """The model of one live allocation: who holds it, where it lives, what it must contain."""

    def __init__(self, heap: pymimalloc.Heap, obj: object, size: int, fill: int) -> None:
        self.heap, self.obj, self.size, self.fill = heap, obj, size, fill
        # what the heap counts for it: a Block its requested size, numpy's data its usable size (pmi_counted_size in pmi_heap.c)
        self.counted = size if isinstance(obj, pymimalloc.Block) else pymimalloc.usable_size(self.address)
        self.views: list[object] = []  # buffers exported from the Block: memoryviews and numpy arrays

    @property
    def address(self) -> int:
        if isinstance(self.obj, pymimalloc.Block):
            return self.obj.address
        return int(self.obj.__array_interface__["data"][0])  # type: ignore[attr-defined]

    def contents_ok(self) -> bool:
        if isinstance(self.obj, pymimalloc.Block):
            return bytes(self.obj.view) == bytes([self.fill]) * self.size
        return bool((self.obj == self.fill).all())  # type: ignore[attr-defined]


class Counts:
    """The model of one heap's exact counters (``heap.stats()``): what its Blocks add up to, the highest that
    reached, and which threads counted anything in it (the peak is exact only while one thread did)."""

    def __init__(self, heap: pymimalloc.Heap) -> None:
        self.heap = heap
        self.live_blocks = self.live_bytes = self.peak = self.allocations = self.huge_bytes = 0
        self.threads: set[int] = set()  # `where` of every thread that allocated, resized or freed here
        self.huge_threads: set[int] = set()  # `where` of every thread that took a huge page here (allocated, resized)
        self.tracked = True  # False once something the model does not count allocated here (arrays, defaults)
        # numpy may make and free temporaries in the heap while it makes an array (heap.full's fill value): then
        # the allocations and the peak the model knows are only lower bounds; the live counts stay exact
        self.temporaries = False

    def add(self, where: int, blocks: int, nbytes: int, allocations: int = 0, huge_bytes: int = 0,
            huge_page: bool = False) -> None:
        self.threads.add(where)
        if huge_page or (huge_bytes and blocks >= 0):
            self.huge_threads.add(where)
        self.live_blocks += blocks
        self.live_bytes += nbytes
        self.huge_bytes += huge_bytes
        self.allocations += allocations
        self.peak = max(self.peak, self.live_bytes)


class PymimallocMachine(RuleBasedStateMachine):
    heaps = Bundle("heaps")
    allocations = Bundle("allocations")
    objects_heaps = Bundle("objects_heaps")  # heaps for python_objects(): their blocks are Python objects

    def __init__(self) -> None:
        super().__init__()
        self.workers = [Worker() for _ in range(WORKERS)]
        self.live: dict[int, Allocation] = {}  # id(Allocation) -> Allocation
        self.orphans: list[Allocation] = []  # Blocks dropped while a view keeps their memory
        self.deferred: list[tuple[Allocation, int]] = []  # dropped while their heap was frozen: (model, address)
        self.fill = 0
        self.closed: set[int] = set()
        self.snapshots: list[tuple[pymimalloc.Heap, pymimalloc.Snapshot]] = []  # held across steps
        self.defaults: list[tuple[pymimalloc.Heap, Any, int]] = []  # as_default() blocks held: heap, cm, thread
        self.numpy_pins: list[tuple[pymimalloc.Heap, Any, int]] = []  # numpy_allocator() blocks held
        self.objects: list[tuple[pymimalloc.Heap, Any, int]] = []  # python_objects() blocks held: heap, cm, thread
        self.closed_objects: set[int] = set()
        self.installed = pymimalloc.installed()
        self.counts: dict[int, Counts] = {}  # id(heap) -> the model of its counters
        self.options_before = dict(pymimalloc.options)
        # a thread that first used a heap while page_full_retain was -1 keeps its full pages in its queue, where a
        # plain collect does not look (mimalloc's theap.c): a page another thread emptied there waits for that thread
        self.full_pages_kept = pymimalloc.options["page_full_retain"] < 0

    # -- helpers ------------------------------------------------------------------------------------
    def _in(self, where: int, call: Callable[[], Any]) -> Any:
        """Run ``call`` in the main thread (0) or in worker ``where`` and return its result."""
        if where == 0:
            return call()
        return outcome(self.workers[where - 1].submit(call))

    def _next_fill(self) -> int:
        self.fill = self.fill % 250 + 1
        return self.fill

    def _open(self, heap: pymimalloc.Heap) -> bool:
        return id(heap) not in self.closed

    def _frozen(self, heap: pymimalloc.Heap) -> bool:
        return any(h is heap for h, _ in self.snapshots)

    def _pinned(self, heap: pymimalloc.Heap) -> bool:
        return any(h is heap for h, _, _ in self.defaults) or any(h is heap for h, _, _ in self.numpy_pins)

    def _in_use(self, heap: pymimalloc.Heap) -> bool:
        held = [*self.live.values(), *self.orphans, *(a for a, _ in self.deferred)]
        return any(a.heap is heap for a in held)

    def _counts(self, heap: pymimalloc.Heap) -> Counts:
        if id(heap) not in self.counts:
            self.counts[id(heap)] = Counts(heap)
        return self.counts[id(heap)]

    def _untracked(self, heap: pymimalloc.Heap) -> None:
        """Something the model does not count allocates from ``heap`` from now on (numpy data, default blocks)."""
        self._counts(heap).tracked = False

    def _freed(self, allocation: Allocation, where: int) -> None:
        """A Block's memory went back in thread ``where`` (arrays: their heaps are not tracked)."""
        self._counts(allocation.heap).add(where, -1, -allocation.counted, huge_bytes=-huge_part(allocation.counted))

    def _forget(self, allocation: Allocation) -> None:
        """The allocation's last reference goes: freed now (in this thread), kept by views, or deferred by a
        freeze."""
        del self.live[id(allocation)]
        if allocation.views:
            self.orphans.append(allocation)
        elif self._frozen(allocation.heap):
            self.deferred.append((allocation, allocation.address))
        else:
            self._freed(allocation, 0)
        allocation.obj = None

    # -- heaps ------------------------------------------------------------------------------------
    @rule(target=heaps)
    def new_heap(self) -> pymimalloc.Heap:
        return self._counts(pymimalloc.Heap()).heap

    @rule(target=heaps)
    def new_heap_in_arena(self) -> pymimalloc.Heap:
        global _ARENA
        if _ARENA is None:  # one for all runs: mimalloc never gives an arena back, and has a fixed number
            _ARENA = pymimalloc.Arena(1 << 30)  # address space only: never full in a run of 40 steps
        return self._counts(pymimalloc.Heap(arena=_ARENA)).heap

    @rule(heap=heaps, where=WHERE, how=st.sampled_from(["close", "destroy", "delete"]))
    def close(self, heap: pymimalloc.Heap, where: int, how: str) -> None:
        def run() -> None:
            if not self._open(heap):
                if how == "close":
                    heap.close()  # idempotent
                else:
                    with pytest.raises(ValueError):
                        getattr(heap, how)()
            elif self._frozen(heap) or self._pinned(heap):
                with pytest.raises(RuntimeError):
                    getattr(heap, how)()
                assert not heap.closed
            elif how == "destroy" and self._in_use(heap):
                with pytest.raises(BufferError):
                    heap.destroy()
                assert not heap.closed
            else:
                getattr(heap, how)()
                assert heap.closed
        self._in(where, run)
        if heap.closed:
            self.closed.add(id(heap))

    @rule(heap=heaps, force=st.booleans(), where=WHERE)
    def collect(self, heap: pymimalloc.Heap, force: bool, where: int) -> None:
        def run() -> None:
            if not self._open(heap):
                with pytest.raises(ValueError):
                    heap.collect(force)
            elif self._frozen(heap):
                with pytest.raises(RuntimeError):
                    heap.collect(force)
            else:
                heap.collect(force)
            pymimalloc.collect(force)
        self._in(where, run)

    @rule(force=st.booleans())
    def collect_in_every_thread_bounds_empty_pages(self, force: bool) -> None:
        """Collect every open heap in the main thread and in each worker (every thread that still lives: the race
        steps' threads have exited), then bound the areas with no block in use. After forced collects there is
        none: empty pages kept for reuse go, and a page another thread emptied is settled by its owner's collect.
        After plain ones small pages may stay retired, but at most one huge page per thread and heap (the kept page,
        pmi_huge_page_keep): a reused huge page whose block another thread freed goes back at a plain collect too.
        Pages that pile up with nothing in them (a page stranded in a queue no collect reaches, a reused page never
        given back) break this bound; page counts alone, never below zero, could not see them."""
        heaps = [model.heap for model in self.counts.values() if self._open(model.heap) and not self._frozen(model.heap)]
        for where in range(WORKERS + 1):
            self._in(where, lambda: [heap.collect(force) for heap in heaps])
        for heap in heaps:
            areas = heap.areas()
            empty = [area for area in areas if area.used == 0]
            if force:
                assert not empty, (heap, empty)
                assert heap.stats().pages == len(areas), (heap, heap.stats(), areas)
            else:
                self._bound_huge_pages(heap, areas)

    def _bound_huge_pages(self, heap: pymimalloc.Heap, areas: list[pymimalloc.Area]) -> None:
        """After plain collects of ``heap`` in the threads that allocated from it: at most one huge page per such
        thread holds no live block (the kept page). A page whose block another thread freed counts that block as used
        until its owner settles it, so the model's live blocks say which huge areas hold something (a reused page
        that a plain collect left behind did not)."""
        model = self._counts(heap)
        held = [a for a in [*self.orphans, *(a for a, _ in self.deferred)] if a.heap is heap]
        if model.tracked and not held and not self.full_pages_kept:
            addresses = [a.address for a in self.live.values() if a.heap is heap]
            huge = [area for area in areas if area.block_size > HUGE and not any(holds(area, address) for address in addresses)]
            assert len(huge) <= len(model.huge_threads), (heap, huge, vars(model))
        else:  # blocks the model does not know (numpy data, views' memory), or full pages kept: the empty areas
            huge = [area for area in areas if area.used == 0 and area.block_size > HUGE]
            assert len(huge) <= WORKERS + 1, (heap, huge, vars(model))

    # -- allocation ---------------------------------------------------------------------------------
    @rule(target=allocations, heap=heaps, size=SIZES, where=WHERE,
          how=st.sampled_from(["malloc", "zalloc", "calloc", "malloc_aligned", "zalloc_aligned"]),
          alignment=st.sampled_from([1, 8, 64, 4096, 1 << 20]))
    def allocate(self, heap: pymimalloc.Heap, size: int, how: str, alignment: int, where: int) -> object:
        if heap.arena is not None:
            alignment = min(alignment, 4096)  # an arena heap cannot take OS pages, which 1 MiB alignment needs
        args = {"malloc": (size,), "zalloc": (size,), "calloc": (1, size),
                "malloc_aligned": (size, alignment), "zalloc_aligned": (size, alignment)}[how]
        if not self._open(heap) or self._frozen(heap):
            error = ValueError if not self._open(heap) else RuntimeError
            with pytest.raises(error):
                self._in(where, lambda: getattr(heap, how)(*args))
            return None
        try:
            block = self._in(where, lambda: getattr(heap, how)(*args))
        except MemoryError:
            assert heap.arena is not None  # only an arena can be full
            return None
        assert block.size == size and block in heap and pymimalloc.heap_of(block) is heap
        if how.endswith("aligned"):
            assert block.address % alignment == 0
        if how in ("zalloc", "calloc", "zalloc_aligned"):
            assert bytes(block.view) == bytes(size)
        allocation = Allocation(heap, block, size, self._next_fill())
        block.view[:] = bytes([allocation.fill]) * size
        self.live[id(allocation)] = allocation
        # an alignment of 1 MiB takes a huge page whatever the size
        self._counts(heap).add(where, 1, size, allocations=1, huge_bytes=huge_part(size), huge_page=alignment > HUGE)
        return allocation

    @rule(target=allocations, heap=heaps, size=st.sampled_from([HUGE, HUGE + 1, 1 << 20, 3 << 20]), where=WHERE)
    def allocate_huge(self, heap: pymimalloc.Heap, size: int, where: int) -> object:
        """A block around the huge limit (a page of its own), and one more of the same size freed at once in the
        same thread (its emptied page kept for the next huge block): the counts of huge blocks meet a free in
        every such step, and frees, reallocs and closes in later ones more often than SIZES alone draws them."""
        allocation = self.allocate(heap, size, "malloc", 1, where)
        if allocation is not None:
            try:
                self._in(where, lambda: heap.malloc(size).free())
            except MemoryError:
                assert heap.arena is not None  # only an arena can be full
                return allocation
            self._counts(heap).add(where, 1, size, allocations=1, huge_bytes=huge_part(size))
            self._counts(heap).add(where, -1, -size, huge_bytes=-huge_part(size))
        return allocation

    @rule(heap=heaps, size=st.sampled_from([HUGE + 1, 1 << 20]), where=WHERE)
    def hand_off_a_block_of_a_reused_huge_page(self, heap: pymimalloc.Heap, size: int, where: int) -> None:
        """In thread ``where``: a huge block freed (its page kept), a second of that size on the kept page (reused),
        a third on a fresh page, freed (kept in turn); then the next thread frees the second. The reused page is
        then empty in ``where``'s full queue beside its kept page, where no allocation of ``where`` finds it: any
        collect of that thread must give it back, and a plain one follows here (unless a thread may keep its full
        pages: page_full_retain=-1). A build whose plain collect skipped it passed this machine's 60 examples before
        this step, and 300 with it while only the collect step checked (2026-12-07): hardly any drawn run held such a
        page when that step came. A heap in an exclusive arena keeps no huge page: the step then runs in a new heap of
        its own (most of the first examples drew arena heaps here, and the 60 fixed ones missed that build)."""
        if heap.arena is not None:
            with pymimalloc.Heap() as own:
                self._hand_off_reused(own, size, where, None)
        elif self._open(heap) and not self._frozen(heap):
            self._hand_off_reused(heap, size, where, self._counts(heap))

    def _hand_off_reused(self, heap: pymimalloc.Heap, size: int, where: int, counts: Counts | None) -> None:
        """hand_off_a_block_of_a_reused_huge_page's steps in ``heap``, counted in ``counts`` (None: a heap of the
        step's own, which the model does not know)."""

        def reuse() -> pymimalloc.Block:
            heap.malloc(size).free()
            reused = heap.malloc(size)
            heap.malloc(size).free()
            return reused

        try:
            reused = self._in(where, reuse)
        except MemoryError:
            assert heap.arena is not None  # only an arena can be full
            self._untracked(heap)  # some of the three came and went uncounted
            return
        other, address = (where + 1) % (WORKERS + 1), reused.address
        self._in(other, reused.free)
        if counts is not None:
            for blocks in (1, -1, 1, 1, -1):
                counts.add(where, blocks, blocks * size, allocations=max(blocks, 0), huge_bytes=blocks * huge_part(size))
            counts.add(other, -1, -size, huge_bytes=-huge_part(size))
        self._in(where, heap.collect)  # a plain collect settles the reused page
        areas = heap.areas()
        if not self.full_pages_kept:
            assert not [area for area in areas if holds(area, address)], areas
        if counts is not None:
            self._bound_huge_pages(heap, areas)

    @rule(target=allocations, heap=heaps, n=st.integers(0, 5000), where=WHERE,
          how=st.sampled_from(["zeros", "full", "allocator"]))
    def array(self, heap: pymimalloc.Heap, n: int, how: str, where: int) -> object:
        if not self._open(heap) or self._frozen(heap):
            with pytest.raises(ValueError if not self._open(heap) else RuntimeError):
                self._in(where, lambda: heap.zeros(n))
            return None
        fill = self._next_fill()
        if how == "allocator":
            self._untracked(heap)  # numpy's temporaries (the scalar's array, np.full's result) land there too

        def make() -> np.ndarray:
            if how == "zeros":
                arr = heap.zeros(n, dtype=np.uint8)
                # no numpy temporaries here (arr.any(), a fill value's array): this thread's numpy allocator may be
                # pinned to a frozen heap, which refuses them (a MemoryError the step would take for the arena's)
                assert bytes(arr.data) == bytes(n)
                arr.data[:] = bytes([fill]) * n
                return arr
            if how == "full":
                return heap.full(n, fill, dtype=np.uint8)
            with heap.numpy_allocator():
                return np.full(n, fill, dtype=np.uint8) + 0  # the temporary is freed again

        try:
            arr = self._in(where, make)
        except MemoryError:
            assert heap.arena is not None
            return None
        allocation = Allocation(heap, arr, n, fill)
        self.live[id(allocation)] = allocation
        self._counts(heap).add(where, 1, allocation.counted, allocations=1, huge_bytes=huge_part(allocation.counted))
        self._counts(heap).temporaries = True
        return allocation

    @rule(allocation=allocations, size=SIZES, where=WHERE)
    def realloc(self, allocation: Allocation | None, size: int, where: int) -> None:
        if allocation is None or id(allocation) not in self.live:
            return
        block = allocation.obj
        if not isinstance(block, pymimalloc.Block):
            return
        heap = allocation.heap
        if not self._open(heap) or self._frozen(heap) or allocation.views:
            error = ValueError if not self._open(heap) else RuntimeError if self._frozen(heap) else BufferError
            with pytest.raises(error):
                self._in(where, lambda: heap.realloc(block, size))
            return
        try:
            grown = self._in(where, lambda: heap.realloc(block, size))
        except MemoryError:
            assert heap.arena is not None and not block.freed
            return
        assert block.freed
        keep = min(size, allocation.size)
        assert bytes(grown.view[:keep]) == bytes([allocation.fill]) * keep
        grown.view[:] = bytes([allocation.fill]) * size
        self._counts(heap).add(where, 0, size - allocation.size, huge_bytes=huge_part(size) - huge_part(allocation.size))
        allocation.obj, allocation.size, allocation.counted = grown, size, size

    @rule(allocation=allocations, where=WHERE, how=st.sampled_from(["view", "memoryview", "numpy"]))
    def take_view(self, allocation: Allocation | None, where: int, how: str) -> None:
        """Export a buffer of a Block (the buffer protocol): each export counts until it is released."""
        if allocation is not None and id(allocation) in self.live and isinstance(allocation.obj, pymimalloc.Block):
            block = allocation.obj
            export: Callable[[], object] = {
                "view": lambda: block.view[:],
                "memoryview": lambda: memoryview(block),
                "numpy": lambda: np.frombuffer(block, np.uint8),
            }[how]
            allocation.views.append(self._in(where, export))
            assert block.exports == len(allocation.views)

    @rule(allocation=allocations)
    def release_views(self, allocation: Allocation | None) -> None:
        if allocation is not None:
            while allocation.views:
                view = allocation.views.pop()
                if isinstance(view, memoryview):
                    view.release()
                del view  # the numpy arrays go with their last reference (a loop variable kept one alive)
            if isinstance(allocation.obj, pymimalloc.Block) and not allocation.obj.freed:
                assert allocation.obj.exports == 0
            if allocation in self.orphans:
                self.orphans.remove(allocation)
                if self._frozen(allocation.heap):
                    self.deferred.append((allocation, -1))  # its address went with the Block; counted only
                else:
                    self._freed(allocation, 0)

    @rule(allocation=consumes(allocations), where=WHERE)
    def free(self, allocation: Allocation | None, where: int) -> None:
        if allocation is None or id(allocation) not in self.live:
            return
        obj = allocation.obj
        if isinstance(obj, pymimalloc.Block):
            if self._frozen(allocation.heap):
                with pytest.raises(RuntimeError):
                    self._in(where, obj.free)
            elif allocation.views:
                with pytest.raises(BufferError):
                    self._in(where, obj.free)
            else:
                self._in(where, obj.free)
                self._freed(allocation, where)
                obj.free()  # idempotent
                with pytest.raises(ValueError):
                    obj.view
                del self.live[id(allocation)]
                allocation.obj = None
                return
        self._forget(allocation)  # we let go of the object: views, a freeze or the GC decide

    @rule(allocation=consumes(allocations))
    def drop(self, allocation: Allocation | None) -> None:
        """Forget the object: garbage collection frees it (or its views keep it, or a freeze defers it)."""
        if allocation is not None and id(allocation) in self.live:
            self._forget(allocation)

    @rule()
    def collect_garbage(self) -> None:
        gc.collect()

    @rule(allocation=allocations)
    def copies_and_pickles(self, allocation: Allocation | None) -> None:
        """copy of a Block is a new Block with its contents; resources refuse to be copied or pickled."""
        resources = [pymimalloc.main_heap(), pymimalloc.options, *(s for _, s in self.snapshots[:1])]
        resources += [_ARENA] if _ARENA is not None else []
        for resource in resources:
            for attempt in (copy.copy, copy.deepcopy, pickle.dumps):
                with pytest.raises(TypeError):
                    attempt(resource)
        records: list[object] = [pymimalloc.process_info()]
        if allocation is not None and self._open(allocation.heap):
            records += [*allocation.heap.areas()][:1] + [*allocation.heap.blocks()][:1]
        for record in records:  # plain values: they copy and pickle
            assert copy.deepcopy(record) == record
            assert type(pickle.loads(pickle.dumps(record))) is type(record)
        if allocation is None or id(allocation) not in self.live or not isinstance(allocation.obj, pymimalloc.Block):
            return
        block, heap = allocation.obj, allocation.heap
        with pytest.raises(TypeError):
            pickle.dumps(block)
        with pytest.raises(TypeError):
            copy.copy(heap)
        if not self._open(heap) or self._frozen(heap):
            with pytest.raises(ValueError if not self._open(heap) else RuntimeError):
                copy.copy(block)
            return
        try:
            twin = copy.copy(block)
        except MemoryError:
            assert heap.arena is not None
            return
        assert twin.address != block.address and twin.heap is heap and bytes(twin.view) == bytes(block.view)
        twin_model = Allocation(heap, twin, allocation.size, allocation.fill)
        self.live[id(twin_model)] = twin_model
        self._counts(heap).add(0, 1, allocation.size, allocations=1, huge_bytes=huge_part(allocation.size))

    # -- state held across steps, in the thread that took it -------------------------------------------
    @rule(heap=heaps, where=WHERE)
    def hold_snapshot(self, heap: pymimalloc.Heap, where: int) -> None:
        snap = heap.snapshot()
        if not self._open(heap):
            with pytest.raises(ValueError):
                self._in(where, snap.__enter__)
            return
        self._in(where, snap.__enter__)
        assert heap.frozen and not heap.closed and "frozen" in repr(heap)
        self.snapshots.append((heap, snap))

    @rule(index=INDEX, where=WHERE)
    def release_snapshot(self, index: int, where: int) -> None:
        if not self.snapshots:
            return
        heap, snap = self.snapshots.pop(index % len(self.snapshots))
        self._in(where, lambda: snap.__exit__(None, None, None))
        snap.__exit__(None, None, None)  # a second exit does nothing
        assert snap.stale
        if not self._frozen(heap):
            assert not heap.frozen
            for allocation, _ in self.deferred:
                if allocation.heap is heap:
                    self._freed(allocation, where)  # freed at the thaw, by the thread that thawed
            self.deferred = [(a, addr) for a, addr in self.deferred if a.heap is not heap]

    @rule(heap=heaps, where=WHERE)
    def enter_default(self, heap: pymimalloc.Heap, where: int) -> None:
        manager = heap.as_default()
        if not self._open(heap) or self._frozen(heap):
            with pytest.raises(ValueError if not self._open(heap) else RuntimeError):
                self._in(where, manager.__enter__)
            return
        assert self._in(where, manager.__enter__) is heap
        assert self._in(where, pymimalloc.default_heap) is heap
        self._untracked(heap)  # malloc_from_the_default allocates from it
        self.defaults.append((heap, manager, where))

    @rule(index=INDEX, where=WHERE)
    def exit_default(self, index: int, where: int) -> None:
        """Leave an as_default() block, possibly from another thread or out of order."""
        if not self.defaults:
            return
        heap, manager, entered = self.defaults.pop(index % len(self.defaults))
        self._in(where, lambda: manager.__exit__(None, None, None))
        if not self._pinned(heap) and not self._frozen(heap) and self._open(heap):
            assert not heap.closed  # closable again (the close rule checks it)

    @rule(where=WHERE, size=st.integers(0, 100))
    def malloc_from_the_default(self, where: int, size: int) -> None:
        def run() -> None:
            heap = pymimalloc.default_heap()
            try:
                block = pymimalloc.malloc(size)
            except ValueError:
                assert heap.closed  # a default left from elsewhere may have been closed since
            except RuntimeError:
                assert heap.frozen
            except MemoryError:
                assert heap.arena is not None
            else:
                assert block.heap is heap
        self._in(where, run)

    # only in workers: numpy allocates everything of that thread from the heap meanwhile, and the main
    # thread runs hypothesis itself, which uses numpy (a frozen heap then fails its arrays, as documented)
    @rule(heap=heaps, where=st.integers(1, WORKERS))
    def pin_numpy_allocator(self, heap: pymimalloc.Heap, where: int) -> None:
        manager = heap.numpy_allocator()
        if not self._open(heap) or self._frozen(heap):
            with pytest.raises(ValueError if not self._open(heap) else RuntimeError):
                self._in(where, manager.__enter__)
            return
        self._in(where, manager.__enter__)
        self._untracked(heap)  # numpy allocates that thread's arrays from it
        self.numpy_pins.append((heap, manager, where))

    @rule(index=INDEX)
    def unpin_numpy_allocator(self, index: int) -> None:
        if self.numpy_pins:
            heap, manager, where = self.numpy_pins.pop(index % len(self.numpy_pins))
            self._in(where, lambda: manager.__exit__(None, None, None))  # its ContextVar lives in that thread

    @rule(name=st.sampled_from(sorted(OPTION_VALUES)), index=INDEX)
    def set_option(self, name: str, index: int) -> None:
        value = OPTION_VALUES[name][index % len(OPTION_VALUES[name])]
        pymimalloc.options[name] = value  # left set for the following steps; teardown restores it
        assert pymimalloc.options[name] == value
        self.full_pages_kept |= name == "page_full_retain" and value < 0

    @rule(name=st.sampled_from(["destroy_on_exit", "guarded_sample_rate", "visit_abandoned", "max_vabits"]))
    def refused_option(self, name: str) -> None:
        before = pymimalloc.options[name]
        with pytest.raises(ValueError, match=name):
            pymimalloc.options[name] = 7
        assert pymimalloc.options[name] == before

    # -- walks ----------------------------------------------------------------------------------------
    @rule(heap=heaps, where=WHERE)
    def snapshot(self, heap: pymimalloc.Heap, where: int) -> None:
        def run() -> None:
            if not self._open(heap):
                with pytest.raises(ValueError):
                    with heap.snapshot():
                        pass
                return
            with heap.snapshot() as snap:
                with pytest.raises(RuntimeError):
                    heap.malloc(8)
                assert snap.live_blocks == len(snap.blocks)
            assert snap.stale and heap.frozen == self._frozen(heap)
        self._in(where, run)

    @rule(heap=heaps, stop_after=st.integers(0, 5), where=WHERE)
    def visit(self, heap: pymimalloc.Heap, stop_after: int, where: int) -> None:
        if not self._open(heap):
            return
        calls: list[object] = []
        finished = self._in(where, lambda: heap.visit(lambda area, info: calls.append(info) or len(calls) <= stop_after))
        assert finished == (len(calls) <= stop_after)

    # -- races: every thread at once ------------------------------------------------------------------
    @rule(heap=heaps)
    def race_close_against_frees_walks_and_lookups(self, heap: pymimalloc.Heap) -> None:
        mine = [a for a in self.live.values() if a.heap is heap and isinstance(a.obj, pymimalloc.Block)
                and not a.views]
        victims = mine[: len(mine) // 2]
        addresses = [a.address for a in mine] + [0, 2**63 + 12345]
        frozen, pinned = self._frozen(heap), self._pinned(heap)
        freed: list[Allocation] = []

        def closer() -> str:
            try:
                heap.close()
            except RuntimeError as error:  # held still or pinned, or frozen this moment by the walker's walk
                assert frozen or pinned or "frozen by a visit or snapshot" in str(error), error
                return "refused"
            return "closed"

        def freer() -> None:
            for allocation in victims:
                try:
                    allocation.obj.free()  # type: ignore[union-attr]
                except RuntimeError as error:  # held still, or frozen this moment by the walker's walk
                    assert frozen or "visit or snapshot" in str(error), error
                else:
                    freed.append(allocation)

        def walker() -> None:
            try:
                infos = list(heap.blocks())
            except ValueError:  # closed meanwhile
                return
            assert all(info.size >= 0 for info in infos)

        def looker() -> None:
            for address in addresses:
                owner = pymimalloc.heap_of(address)
                assert owner is None or owner is heap or owner.is_main
                try:
                    pymimalloc.usable_size(address)
                except ValueError:
                    pass  # not mimalloc's (the 0 and the huge address)
                try:
                    address in heap
                except ValueError:
                    assert heap.closed

        replies = [worker.submit(job) for worker, job in zip(self.workers, (closer, freer, walker))]
        looker()
        result = outcome(replies[0])
        for reply in replies[1:]:
            outcome(reply)
        if result == "closed":
            self.closed.add(id(heap))
        for allocation in freed:
            del self.live[id(allocation)]
            self._freed(allocation, 2)  # the freer ran in worker 2
            allocation.obj = None

    @rule(heap=heaps)
    def race_two_walks(self, heap: pymimalloc.Heap) -> None:
        if not self._open(heap):
            return
        expected = len(list(heap.blocks()))
        replies = [w.submit(lambda: len(list(heap.blocks()))) for w in self.workers[:2]]
        with heap.snapshot() as snap:
            assert snap.live_blocks == expected
        assert [outcome(r) for r in replies] == [expected, expected]

    @rule()
    def race_main_heap_walk_against_closes(self) -> None:
        def churn() -> None:
            for _ in range(5):
                h = pymimalloc.Heap()
                keep = [h.malloc(n) for n in (16, 300, 70000, 1 << 20)]
                h.close()
                del keep

        replies = [w.submit(churn) for w in self.workers[:2]]
        for _ in range(3):
            list(pymimalloc.main_heap().blocks())
        for reply in replies:
            outcome(reply)

    # -- fork ---------------------------------------------------------------------------------------
    @rule(heap=heaps)
    def fork_and_check_the_child(self, heap: pymimalloc.Heap) -> None:
        """The child inherits every heap and block: they keep their contents, and the heaps still work."""
        expect = "closed" if not self._open(heap) else "frozen" if self._frozen(heap) else \
            "pinned" if self._pinned(heap) else "open"
        live = list(self.live.values())

        def in_the_child() -> None:
            assert all(a.contents_ok() for a in live)
            if expect == "open":
                block = heap.malloc(64)
                block.view[:] = b"c" * 64
                assert heap.contains(block)
                heap.close()
            elif expect == "closed":
                with pytest.raises(ValueError):
                    heap.malloc(8)
            else:  # frozen: the thread that froze it is not in the child; pinned: likewise
                with pytest.raises(RuntimeError):
                    heap.close()

        fork_and_check(in_the_child)

    @rule(where=st.integers(1, WORKERS))
    def fork_while_a_worker_closes_heaps(self, where: int) -> None:
        """Forks while a worker makes, uses and closes heaps of its own. In each child, every such heap that reads
        closed with nothing alive is released: a fork between a close's decision and its release once left the
        child a heap that nothing released (csrc/pmi_heap.c's fork handler now does). And the main heap walks."""
        stop = threading.Event()
        recent: list[pymimalloc.Heap] = []

        def churn() -> None:
            while not stop.is_set():
                heap = pymimalloc.Heap()
                for size in (100, 20000, 300000, 3 << 20):
                    heap.malloc(size).free()
                recent.append(heap)
                del recent[:-20]
                heap.close()

        def in_the_child() -> None:
            core = pymimalloc._core
            stuck = [heap for heap in list(recent) if heap.closed and heap.live_blocks == 0
                     and not core.lib.pmi_heap_released(core.handle(heap))]
            assert not stuck, stuck

        reply = self.workers[where - 1].submit(churn)
        try:
            for _ in range(5):
                fork_and_check(in_the_child)
        finally:
            stop.set()
            outcome(reply)

    # -- misuse -------------------------------------------------------------------------------------
    @rule(heap=heaps, size=st.sampled_from([-1, 2**64, 1.5, None, True]))
    def bad_size(self, heap: pymimalloc.Heap, size: object) -> None:
        expected = {-1: ValueError, 2**64: MemoryError}.get(size, TypeError)  # type: ignore[call-overload]
        with pytest.raises(expected):
            heap.malloc(size)  # type: ignore[arg-type]

    @rule(address=st.one_of(st.integers(-(2**70), 2**70), st.integers(0, 2**47)), where=WHERE)
    def foreign_address(self, address: int, where: int) -> None:
        owner = self._in(where, lambda: pymimalloc.heap_of(address))
        assert owner is None or isinstance(owner, pymimalloc.Heap)

    @rule(a=allocations, heap=heaps)
    def realloc_into_the_wrong_heap(self, a: Allocation | None, heap: pymimalloc.Heap) -> None:
        if a is None or id(a) not in self.live or not isinstance(a.obj, pymimalloc.Block):
            return
        if a.heap is not heap and self._open(heap) and self._open(a.heap):
            with pytest.raises(ValueError):
                heap.realloc(a.obj, 8)

    # -- mimalloc as Python's allocator: install(), uninstall(), python_objects() ----------------------------
    @rule(on=st.booleans())
    def install_or_uninstall(self, on: bool) -> None:
        if on:
            pymimalloc.install()
            assert pymimalloc.installed() == ("mem", "obj")
        else:
            pymimalloc.uninstall()
            assert pymimalloc.installed() == ()
        kept = [str(i) * 3 for i in range(300)]  # new objects come from wherever the routing says; all work
        assert kept[-1] == "299299299"

    @rule(maker=st.integers(1, WORKERS), taker=WHERE)
    def objects_made_in_one_thread_freed_in_another(self, maker: int, taker: int) -> None:
        """Python's heap abandons its full pages to the arena, where another thread's free finds them
        (csrc/pmi_mimalloc.c), whatever options the machine set before: page_full_retain=-1, which stops the
        abandoning (a queue between threads then grows without bound), must never reach its theaps."""
        def make() -> tuple[list[str], int]:
            made = [str(i) * 3 for i in range(20000)]  # fills pages of a few small sizes in this thread
            return made, pymimalloc._core.lib.pmi_python_heap_full_retain()
        made, retain = self._in(maker, make)
        assert retain != -1  # -1: not abandoning; -2: no part of Python's heap in that thread (not installed, ...)
        self._in(taker, made.clear)  # freed from another thread (or the same one, when taker == maker)
        del made

    @rule(target=objects_heaps)
    def new_objects_heap(self) -> pymimalloc.Heap:
        return pymimalloc.Heap()

    # in workers only: the main thread runs hypothesis, whose objects would land in the heap
    @rule(heap=objects_heaps, where=st.integers(1, WORKERS))
    def enter_python_objects(self, heap: pymimalloc.Heap, where: int) -> None:
        manager = heap.python_objects()
        if id(heap) in self.closed_objects:
            with pytest.raises(ValueError):
                self._in(where, manager.__enter__)
            return
        assert self._in(where, manager.__enter__) is heap
        self.objects.append((heap, manager, where))

    @rule(index=INDEX, where=WHERE)
    def exit_python_objects(self, index: int, where: int) -> None:
        """Leave a python_objects() block, possibly out of order or from another thread: it stops at once."""
        if self.objects:
            _, manager, _ = self.objects.pop(index % len(self.objects))
            self._in(where, lambda: manager.__exit__(None, None, None))

    @rule(where=st.integers(1, WORKERS))
    def python_objects_land_in_the_innermost_held_block(self, where: int) -> None:
        held = [heap for heap, _, thread in self.objects if thread == where]
        expected = held[-1] if held else None

        def run() -> list[Any]:
            made = [str(i) * 3 for i in range(200)]
            return [pymimalloc.heap_of(id(s)) for s in made]

        found = self._in(where, run)
        if expected is None:
            assert not any(h is not None and id(h) in {id(o) for o, _, _ in self.objects} for h in found)
        else:
            assert all(h is expected for h in found), (expected, set(map(repr, found)))

    @rule(heap=objects_heaps)
    def close_objects_heap(self, heap: pymimalloc.Heap) -> None:
        if any(h is heap for h, _, _ in self.objects):
            with pytest.raises(RuntimeError):
                heap.close()
            return
        heap.close()  # Python objects still alive in it keep its memory until they go
        self.closed_objects.add(id(heap))

    @rule(a=heaps, b=heaps, first_out=st.integers(0, 1), where=st.integers(1, WORKERS))
    def as_default_in_two_tasks(self, a: pymimalloc.Heap, b: pymimalloc.Heap, first_out: int, where: int) -> None:
        if a is not b and all(self._open(h) and not self._frozen(h) for h in (a, b)):
            self._blocks_in_two_tasks(a, b, "as_default", first_out, where)

    # objects heaps only: a task's objects may outlive it in caches, which the model of Blocks does not know
    @rule(a=objects_heaps, b=objects_heaps, first_out=st.integers(0, 1), where=st.integers(1, WORKERS))
    def python_objects_in_two_tasks(self, a: pymimalloc.Heap, b: pymimalloc.Heap, first_out: int, where: int) -> None:
        if a is not b and not {id(a), id(b)} & self.closed_objects:
            self._blocks_in_two_tasks(a, b, "python_objects", first_out, where)

    def _blocks_in_two_tasks(self, a: pymimalloc.Heap, b: pymimalloc.Heap, kind: str, first_out: int, where: int) -> None:
        """Two asyncio tasks of one thread, each inside a block of its own heap, leaving in the drawn order."""

        def run() -> list[bool]:
            import asyncio

            current = pymimalloc.default_heap if kind == "as_default" else \
                pymimalloc._core.python_objects_heap_in_context
            results: list[bool] = []
            leave = [asyncio.Event(), asyncio.Event()]

            async def task(heap: pymimalloc.Heap, i: int) -> None:
                outer = current()  # the task's copy of the thread's context: an enclosing block's heap, say
                with getattr(heap, kind)():
                    await asyncio.sleep(0)
                    results.append(current() is heap)
                    await leave[i].wait()
                results.append(current() is outer)

            async def main() -> None:
                tasks = [asyncio.create_task(task(a, 0)), asyncio.create_task(task(b, 1))]
                await asyncio.sleep(0.001)
                leave[first_out].set()
                await asyncio.sleep(0.001)
                leave[1 - first_out].set()
                await asyncio.gather(*tasks)

            before = current()
            asyncio.run(main())
            results.append(current() is before)
            return results

        assert all(self._in(where, run))

    # -- invariants ---------------------------------------------------------------------------------
    @invariant()
    def visitor_sees_exactly_the_model(self) -> None:
        by_heap: dict[int, list[int]] = {}
        counted: dict[int, int] = {}
        heaps: dict[int, pymimalloc.Heap] = {}
        for allocation in [*self.live.values(), *self.orphans]:
            if self._open(allocation.heap):
                heaps[id(allocation.heap)] = allocation.heap
                if allocation.obj is not None:
                    by_heap.setdefault(id(allocation.heap), []).append(allocation.address)
        for allocation, _ in self.deferred:
            if self._open(allocation.heap):
                heaps[id(allocation.heap)] = allocation.heap
                counted[id(allocation.heap)] = counted.get(id(allocation.heap), 0) + 1
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
            assert len(walked) == len(expected) + orphaned + counted.get(key, 0)

    @invariant()
    def counters_are_what_the_model_says(self) -> None:
        """heap.stats() of every open heap: the same figures read in the main thread and in a worker (mimalloc's
        own sum covered the reading thread alone: another thread's pages read 0, and -4 once freed here), and
        no count below zero. Of a heap that only Blocks and arrays of its own used: the live counts and the huge
        bytes exact (numpy's data by usable size, counted in and out by one rule: the ASan build once counted it
        in by the decoded padding and out by the whole block; release builds' own huge count never went down),
        and the peak exact while one thread counted, None once a second one did (a sum of per-thread peaks is no
        peak)."""
        for model in self.counts.values():
            if not self._open(model.heap):
                continue
            stats = model.heap.stats()
            elsewhere = self._in(1, model.heap.stats)
            assert min(stats.pages, stats.pages_abandoned, stats.huge_bytes, stats.live_bytes) >= 0, stats
            assert (elsewhere.pages, elsewhere.huge_bytes) == (stats.pages, stats.huge_bytes), (stats, elsewhere)
            if not model.tracked:
                continue
            assert (stats.live_blocks, stats.live_bytes) == (model.live_blocks, model.live_bytes), (stats, vars(model))
            assert stats.huge_bytes == model.huge_bytes, (stats, vars(model))
            if len(model.threads) > 1:
                assert stats.peak_live_bytes is None, (stats, vars(model))
            elif model.temporaries:
                assert stats.allocations >= model.allocations, (stats, vars(model))
                assert stats.peak_live_bytes is not None and stats.peak_live_bytes >= model.peak, (stats, vars(model))
            else:
                assert stats.allocations == model.allocations, (stats, vars(model))
                assert stats.peak_live_bytes == model.peak, (stats, vars(model))

    @invariant()
    def contents_match_their_patterns(self) -> None:
        for allocation in self.live.values():
            assert allocation.contents_ok()

    @invariant()
    def frozen_and_closed_are_what_the_model_says(self) -> None:
        for heap in {id(a.heap): a.heap for a in self.live.values()}.values():
            assert heap.closed == (not self._open(heap))
            assert heap.frozen == (self._open(heap) and self._frozen(heap))

    def teardown(self) -> None:
        for _, manager, where in self.objects:
            self._in(where, lambda: manager.__exit__(None, None, None))
        if not self.installed:
            pymimalloc.uninstall()
        elif pymimalloc.installed() != self.installed:  # a step uninstalled: the suite's PYMIMALLOC_INSTALL=1 run
            pymimalloc.install(self.installed)           # goes on served, as the modules after this one expect
        for heap, manager, where in self.numpy_pins:
            self._in(where, lambda: manager.__exit__(None, None, None))
        for _, manager, _ in self.defaults:
            manager.__exit__(None, None, None)
        for _, snap in self.snapshots:
            snap.__exit__(None, None, None)
        for allocation in [*self.live.values(), *self.orphans]:
            for view in allocation.views:
                if isinstance(view, memoryview):
                    view.release()
            allocation.views.clear()
        self.live.clear()
        self.orphans.clear()
        for worker in self.workers:
            worker.stop()
        for name, value in self.options_before.items():
            if pymimalloc.options[name] != value and name in OPTION_VALUES:
                pymimalloc.options[name] = value
        gc.collect()


PymimallocMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None, derandomize=not EXPLORE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPymimallocMachine = PymimallocMachine.TestCase
