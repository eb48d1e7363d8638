"""Eight Python threads run a mixed workload over a small shared pool of heaps, in a child process.

For ``PYMIMALLOC_WORKLOAD_SECONDS`` seconds (5 by default; CI sets 30) eight threads pick random actions:
allocate (malloc, zalloc, calloc, malloc_aligned, zalloc_aligned; sizes up to 1 MiB, alignments up to
1 MiB), verify a shared block's contents (every byte of a block is its tag), free a shared block (mostly
one another thread allocated), realloc, close a heap other threads are using and put a new one in its
place, hold ``heap.snapshot()`` for a moment, walk ``heap.blocks()``, query ``heap_of``/``in``/
``usable_size`` on live and recently freed addresses, make numpy arrays (``heap.zeros``, ``heap.empty``,
``with heap.numpy_allocator():``), allocate through ``with heap.as_default(): pymimalloc.malloc(n)``,
collect, and walk the main heap.

The documented answers to racing with another thread are expected and counted, per type and per action:

- ValueError: the heap was closed, or the block freed, by another thread ("closed", "freed"; a query on
  a freed address may also say it is "not an address of a block allocated by mimalloc");
- RuntimeError: the heap is frozen by another thread's walk or snapshot (allocating, freeing, realloc,
  closing, collecting), or pinned by another thread's ``as_default``/``numpy_allocator`` (closing only);
- BufferError: another thread holds a view of the block being freed or moved (free, realloc);
- MemoryError: only for an alignment of 1 MiB, and for numpy data allocated from a heap that another
  thread's walk or snapshot froze meanwhile (numpy can only say MemoryError; see pmi_data_alloc).

Anything else, a byte that is not its block's tag, a snapshot that misses a live block of its heap, or
a heap that still counts live blocks once everything is freed, is a failure. The child prints a JSON
summary on stdout and must exit 0 with nothing on stderr; a segfault or a hang (faulthandler dumps every
thread's stack first) fails the test cleanly. Each thread draws from its own ``random.Random(seed)``, so
the sequence of choices is reproducible; the interleaving is not.

Run the child by hand with ``python tests/test_workload.py [seconds] [seed]``.
"""

from __future__ import annotations

import bisect
import collections
import functools
import gc
import json
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from typing import Any

import numpy as np

import pymimalloc
from threads import run_threads

SECONDS = float(os.environ.get("PYMIMALLOC_WORKLOAD_SECONDS", "5"))
SEED = int(os.environ.get("PYMIMALLOC_WORKLOAD_SEED", "1"))
THREADS = 8
POOL_HEAPS = 3  # heaps shared by all threads; closing one puts a new one in its place
MAX_BLOCKS = 256  # shared blocks in flight
MAX_ARRAYS = 32  # shared numpy arrays in flight
MIN_OPERATIONS = 1000
MAX_SIZE = 1 << 20
MAX_EXAMPLES = 5  # failure messages kept per kind (all are counted)

#: relative weights of the actions
WEIGHTS: dict[str, float] = {
    "alloc": 24,
    "verify": 10,
    "free": 16,
    "realloc": 6,
    "close": 1,
    "snapshot": 2,
    "blocks": 2,
    "query": 12,
    "numpy": 6,
    "arrays": 4,
    "as_default": 4,
    "collect": 1,
    "main_heap_blocks": 0.5,
}
#: actions that allocate from, free into or close a heap: a frozen heap refuses them with RuntimeError
FREEZABLE = frozenset({"alloc", "free", "realloc", "close", "numpy", "as_default", "collect"})


# -- the parent ---------------------------------------------------------------------------------------


def test_eight_threads_mixed_workload() -> None:
    from childproc import describe, run  # here: the child, this file run as a program, does not need pytest

    timeout = SECONDS * 3 + 60
    started = time.monotonic()
    result = run([os.path.abspath(__file__), str(SECONDS), str(SEED)], timeout=timeout)
    elapsed = time.monotonic() - started
    status = result.stderr.partition("\n")[0] if result.stderr.startswith("hung for") else describe(result.returncode)
    report = (f"{status} after {elapsed:.1f} s\n--- stdout ---\n{result.stdout[-5000:]}\n"
              f"--- stderr ---\n{result.stderr[-20000:]}")
    assert result.returncode == 0, report
    assert result.stderr == "", report
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(summary, indent=1, sort_keys=True))  # shown with -s or -rP
    assert summary["mimalloc_errors"] == 0, report
    assert summary["failures"] == 0, report
    assert summary["operations"] > MIN_OPERATIONS, report
    assert set(summary["ops"]) == set(WEIGHTS), f"some actions never ran: {report}"
    assert summary["cross_thread_frees"] > 0 and summary["heaps_replaced"] > 0, report


# -- the child ----------------------------------------------------------------------------------------


def _size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.5:
        return rng.randrange(0, 1025)
    if r < 0.85:
        return rng.randrange(1025, 65537)
    return rng.randrange(65537, MAX_SIZE + 1)


class _Worker:
    def __init__(self, index: int, seed: int) -> None:
        self.index = index
        self.rng = random.Random(seed * 1000 + index)
        self.ops: Counter[str] = Counter()
        self.expected: Counter[str] = Counter()
        self.expected_by_action: Counter[str] = Counter()
        self.cross_thread_frees = 0


class _Freezes:
    """Which heaps a walk or snapshot of this workload may be freezing, so a numpy MemoryError can be
    told apart: numpy reports a frozen heap's refusal as MemoryError."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: Counter[int] = Counter()
        self._started: Counter[int] = Counter()

    def begin(self, heap: pymimalloc.Heap) -> None:
        with self._lock:
            self._active[id(heap)] += 1
            self._started[id(heap)] += 1

    def end(self, heap: pymimalloc.Heap) -> None:
        with self._lock:
            self._active[id(heap)] -= 1

    def mark(self, heap: pymimalloc.Heap) -> tuple[int, int]:
        with self._lock:
            return self._active[id(heap)], self._started[id(heap)]

    def overlapped(self, heap: pymimalloc.Heap, mark: tuple[int, int]) -> bool:
        """Whether a freeze of ``heap`` was in progress at ``mark`` or began since."""
        active, started = mark
        with self._lock:
            return active > 0 or self._started[id(heap)] != started


class Workload:
    def __init__(self, seconds: float, seed: int) -> None:
        self.seconds = seconds
        self.seed = seed
        self.heaps_lock = threading.Lock()
        self.heaps = [pymimalloc.Heap() for _ in range(POOL_HEAPS)]
        self.all_heaps = list(self.heaps)  # every heap ever made, for the final leak check
        self.pending_close: list[pymimalloc.Heap] = []  # replaced, but their close was refused for now
        self.heaps_replaced = 0
        self.blocks_lock = threading.Lock()
        self.blocks: list[tuple[pymimalloc.Block, int, int]] = []  # (block, tag, allocating thread)
        self.arrays_lock = threading.Lock()
        self.arrays: list[tuple[np.ndarray, float]] = []
        self.freed: collections.deque[int] = collections.deque(maxlen=256)  # recently freed addresses
        self.freezes = _Freezes()
        self.failures_lock = threading.Lock()
        self.failures: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.deadline = 0.0

    # -- bookkeeping ----------------------------------------------------------------------------------
    def fail(self, kind: str, message: str) -> None:
        with self.failures_lock:
            self.failures[kind] += 1
            examples = self.examples.setdefault(kind, [])
            if len(examples) < MAX_EXAMPLES:
                examples.append(message)

    def expect(self, w: _Worker, action: str, exc: BaseException, memory_ok: bool = False) -> None:
        """Count ``exc`` if it is a documented answer for ``action``, else record a failure."""
        name, message = type(exc).__name__, str(exc)
        if type(exc) is ValueError:
            ok = "closed" in message or "freed" in message or (action == "query" and "not an address" in message)
        elif type(exc) is RuntimeError:
            frozen = "frozen" in message or "visit or snapshot" in message
            ok = (frozen and action in FREEZABLE) or ("in use" in message and action == "close")
        elif type(exc) is BufferError:
            ok = action in ("free", "realloc")
        elif isinstance(exc, MemoryError):  # numpy raises a subclass
            ok = memory_ok
        else:
            ok = False
        if ok:
            if isinstance(exc, MemoryError):
                name = "MemoryError (numpy, heap frozen)" if action == "numpy" else "MemoryError"
            key = name
            w.expected[key] += 1
            w.expected_by_action[f"{action}: {key}"] += 1
        else:
            self.fail(f"unexpected {name} in {action}", "".join(traceback.format_exception(exc)))

    def pick_heap(self, w: _Worker) -> pymimalloc.Heap:
        with self.heaps_lock:
            return w.rng.choice(self.heaps)

    def check(self, block: pymimalloc.Block, tag: int, what: str, hold: float = 0.0) -> None:
        """Every byte of ``block`` must be ``tag``. ValueError if the block is freed meanwhile.

        With ``hold``, keep the view for that many seconds (other threads' free and realloc of the block
        then get BufferError).
        """
        with block.view as view:
            data = bytes(view)
            if hold:
                time.sleep(hold)
        if data.count(tag) != len(data):
            wrong = next(i for i, b in enumerate(data) if b != tag)
            self.fail("wrong content", f"{what}: byte {wrong} of a {len(data)}-byte block at {block!r} is "
                                       f"{data[wrong]}, not its tag {tag}")

    @staticmethod
    def fill(block: pymimalloc.Block, tag: int) -> None:
        with block.view as view:
            view[:] = bytes([tag]) * len(view)

    def share(self, w: _Worker, block: pymimalloc.Block, tag: int) -> None:
        """Put a filled block in the shared pool, or free it here if the pool is full."""
        with self.blocks_lock:
            if len(self.blocks) < MAX_BLOCKS:
                self.blocks.append((block, tag, w.index))
                return
        address = block.address
        try:
            block.free()
        except (BufferError, RuntimeError) as exc:
            self.expect(w, "free", exc)  # nobody else has this block: a frozen heap is the only answer
            return
        self.freed.append(address)

    # -- actions --------------------------------------------------------------------------------------
    def act_alloc(self, w: _Worker) -> None:
        rng = w.rng
        heap = self.pick_heap(w)
        kind = rng.choice(("malloc", "zalloc", "calloc", "malloc_aligned", "zalloc_aligned"))
        size = _size(rng)
        alignment = 1 << rng.randrange(0, 21)  # 1 B .. 1 MiB
        try:
            if kind == "malloc":
                block = heap.malloc(size)
            elif kind == "zalloc":
                block = heap.zalloc(size)
            elif kind == "calloc":
                count = rng.randrange(1, 17)
                block = heap.calloc(count, size // count)
            elif kind == "malloc_aligned":
                block = heap.malloc_aligned(size, alignment)
            else:
                block = heap.zalloc_aligned(size, alignment)
        except Exception as exc:
            self.expect(w, "alloc", exc, memory_ok=kind.endswith("aligned") and alignment == MAX_SIZE)
            return
        if kind.endswith("aligned") and block.address % alignment:
            self.fail("misaligned", f"{kind}({size}, {alignment}) gave {block.address:#x}")
        if kind in ("zalloc", "calloc", "zalloc_aligned"):
            self.check(block, 0, f"{kind}({size}) is not zeroed")
        tag = rng.randrange(1, 256)
        self.fill(block, tag)
        self.share(w, block, tag)

    def act_verify(self, w: _Worker) -> None:
        with self.blocks_lock:
            if not self.blocks:
                return
            block, tag, _ = w.rng.choice(self.blocks)
        try:
            # another thread may free it first (ValueError), or try to while the view is held (BufferError)
            self.check(block, tag, "a shared block", hold=0.001 if w.rng.random() < 0.3 else 0.0)
        except Exception as exc:
            self.expect(w, "verify", exc)

    def act_free(self, w: _Worker) -> None:
        with self.blocks_lock:
            if not self.blocks:
                return
            item = self.blocks.pop(w.rng.randrange(len(self.blocks)))
        block, tag, owner = item
        try:
            self.check(block, tag, "a block about to be freed")
            address = block.address
            block.free()  # BufferError while another thread reads it; RuntimeError while a walk runs
        except Exception as exc:
            self.expect(w, "free", exc)
            if not block.freed:
                with self.blocks_lock:
                    self.blocks.append(item)
            return
        self.freed.append(address)
        if owner != w.index:
            w.cross_thread_frees += 1

    def act_realloc(self, w: _Worker) -> None:
        with self.blocks_lock:
            if not self.blocks:
                return
            item = self.blocks.pop(w.rng.randrange(len(self.blocks)))
        block, tag, _ = item
        new_size = _size(w.rng)
        try:
            old_size, address = block.size, block.address
            moved = block.heap.realloc(block, new_size)  # its heap may be closed or frozen meanwhile
        except Exception as exc:
            self.expect(w, "realloc", exc)
            if not block.freed:
                with self.blocks_lock:
                    self.blocks.append(item)
            return
        if not block.freed:
            self.fail("realloc", "the old Block is not freed after realloc")
        with moved.view as view:
            kept = bytes(view[: min(old_size, new_size)])
        if kept.count(tag) != len(kept):
            wrong = next(i for i, b in enumerate(kept) if b != tag)
            self.fail("wrong content", f"realloc {old_size} -> {new_size}: byte {wrong} is {kept[wrong]}, not {tag}")
        self.freed.append(address)
        self.fill(moved, tag)
        self.share(w, moved, tag)

    def act_close(self, w: _Worker) -> None:
        with self.heaps_lock:
            if self.pending_close and w.rng.random() < 0.5:
                old = self.pending_close.pop()
            else:
                index = w.rng.randrange(len(self.heaps))
                old = self.heaps[index]
                self.heaps[index] = pymimalloc.Heap()
                self.all_heaps.append(self.heaps[index])
                self.heaps_replaced += 1
        try:
            old.close()  # other threads may still be using it
        except Exception as exc:
            self.expect(w, "close", exc)
            with self.heaps_lock:
                self.pending_close.append(old)
            return
        if not old.closed:
            self.fail("close", "a heap is not closed after close()")

    def act_snapshot(self, w: _Worker) -> None:
        heap = self.pick_heap(w)
        self.freezes.begin(heap)
        try:
            with heap.snapshot() as snap:
                spans = sorted((info.address, info.address + info.size) for info in snap.blocks)
                starts = [start for start, _ in spans]
                # While the pool's lock is held its blocks cannot be freed or moved (only a thread that
                # took one out frees it), and while the heap is frozen nothing is allocated from it: so
                # every pooled block of this heap was live when the snapshot walked it.
                with self.blocks_lock:
                    missed = []
                    for block, _, _ in self.blocks:
                        if block.heap is heap:
                            address = block.address
                            k = bisect.bisect_right(starts, address) - 1
                            if k < 0 or address >= spans[k][1]:
                                missed.append(f"{address:#x} ({block.size} bytes)")
                if missed:
                    self.fail("snapshot misses live blocks",
                              f"{len(missed)} of the heap's pooled blocks are not in its snapshot: {missed[:5]}")
                time.sleep(w.rng.uniform(0, 0.002))  # hold the heap frozen for a moment
        except Exception as exc:
            self.expect(w, "snapshot", exc)
        finally:
            self.freezes.end(heap)

    def act_blocks(self, w: _Worker) -> None:
        heap = self.pick_heap(w)
        self.freezes.begin(heap)
        try:
            infos = list(heap.blocks())
            if any(info.size <= 0 for info in infos):
                self.fail("blocks", "heap.blocks() gave a block of size 0")
        except Exception as exc:
            self.expect(w, "blocks", exc)
        finally:
            self.freezes.end(heap)

    def act_query(self, w: _Worker) -> None:
        rng = w.rng
        if rng.random() < 0.6:
            with self.blocks_lock:
                if not self.blocks:
                    return
                block, _, _ = rng.choice(self.blocks)
            other = self.pick_heap(w)
            try:
                self.query_live(block, other)
            except Exception as exc:
                self.expect(w, "query", exc)
        else:
            if not self.freed:
                return
            address = rng.choice(list(self.freed))
            heap = self.pick_heap(w)
            for query in (pymimalloc.heap_of, pymimalloc.usable_size, heap.contains):
                try:
                    answer = query(address)  # anything but a crash: the address may be reused already
                    if not isinstance(answer, (pymimalloc.Heap, int, type(None))):
                        self.fail("query", f"{query.__name__}({address:#x}) gave {answer!r}")
                except Exception as exc:
                    self.expect(w, "query", exc)

    def query_live(self, block: pymimalloc.Block, other: pymimalloc.Heap) -> None:
        """heap_of, ``in`` and usable_size on a pooled block another thread may free meanwhile."""
        size = block.size
        owner = block.heap
        found = pymimalloc.heap_of(block)
        usable = pymimalloc.usable_size(block)
        inside = block in owner
        in_other = other is not owner and block in other
        if block.freed:
            return  # freed (and perhaps reused) during the queries: their answers are moot
        if usable < size:
            self.fail("query", f"usable_size {usable} < size {size}")
        if in_other:
            self.fail("query", "a block is in a heap it was not allocated from")
        if not owner.closed:  # open before and after: it was open throughout
            if found is not owner:
                self.fail("query", f"heap_of(block) gave {found!r}, not its open heap {owner!r}")
            if not inside:
                self.fail("query", "a live block is not `in` its open heap")
        elif found is not None and found is not owner and found is not pymimalloc.main_heap():
            self.fail("query", f"heap_of(block of a closed heap) gave another heap {found!r}")

    def act_numpy(self, w: _Worker) -> None:
        rng = w.rng
        heap = self.pick_heap(w)
        n = rng.randrange(1, MAX_SIZE // 8 + 1)
        value = float(rng.randrange(1, 1000))
        how = rng.choice(("zeros", "empty", "allocator"))
        mark = self.freezes.mark(heap)
        try:
            if how == "zeros":
                array = heap.zeros(n)
                if array.any():
                    self.fail("wrong content", f"heap.zeros({n}) is not all zeros")
                array += value
            elif how == "empty":
                array = heap.empty(n)
                array.fill(value)
            else:
                with heap.numpy_allocator():  # the heap is pinned: it cannot close meanwhile
                    array = np.full(n, value / 2) * 2  # a temporary and a result, both from the heap
                    if array not in heap:
                        self.fail("numpy", "an array made in numpy_allocator() is not in its heap")
        except MemoryError as exc:
            self.expect(w, "numpy", exc, memory_ok=self.freezes.overlapped(heap, mark))
            return
        except Exception as exc:
            self.expect(w, "numpy", exc)
            return
        if not (array == value).all():
            self.fail("wrong content", f"an array of {n} is not all {value}")
        with self.arrays_lock:
            self.arrays.append((array, value))
            if len(self.arrays) > MAX_ARRAYS:
                self.arrays.pop(rng.randrange(len(self.arrays)))  # dropped here: its data freed here

    def act_arrays(self, w: _Worker) -> None:
        with self.arrays_lock:
            if not self.arrays:
                return
            index = w.rng.randrange(len(self.arrays))
            array, value = self.arrays.pop(index) if w.rng.random() < 0.5 else self.arrays[index]
        if not (array == value).all():  # arrays outlive their heaps
            self.fail("wrong content", f"a shared array of {array.size} is not all {value}")

    def act_as_default(self, w: _Worker) -> None:
        heap = self.pick_heap(w)
        size = w.rng.randrange(0, 65537)
        try:
            with heap.as_default():
                block = pymimalloc.malloc(size)
                if pymimalloc.default_heap() is not heap or block.heap is not heap:
                    self.fail("as_default", "pymimalloc.malloc did not allocate from the default heap")
        except Exception as exc:
            self.expect(w, "as_default", exc)
            return
        tag = w.rng.randrange(1, 256)
        self.fill(block, tag)
        self.share(w, block, tag)

    def act_collect(self, w: _Worker) -> None:
        try:
            if w.rng.random() < 0.5:
                pymimalloc.collect(w.rng.random() < 0.2)
            else:
                self.pick_heap(w).collect(w.rng.random() < 0.2)
        except Exception as exc:
            self.expect(w, "collect", exc)

    def act_main_heap_blocks(self, w: _Worker) -> None:
        try:
            list(pymimalloc.main_heap().blocks())
        except Exception as exc:
            self.expect(w, "main_heap_blocks", exc)

    # -- running --------------------------------------------------------------------------------------
    def work(self, w: _Worker) -> None:
        actions = list(WEIGHTS)
        methods = [getattr(self, f"act_{name}") for name in actions]
        weights = [WEIGHTS[name] for name in actions]
        indices = range(len(actions))
        while time.monotonic() < self.deadline:
            i = w.rng.choices(indices, weights)[0]
            w.ops[actions[i]] += 1
            try:
                methods[i](w)
            except BaseException as exc:  # the actions catch what they expect; this is a failure
                self.fail(f"escaped {type(exc).__name__} in {actions[i]}", "".join(traceback.format_exception(exc)))

    def run(self) -> dict[str, Any]:
        from pymimalloc._core import lib

        workers = [_Worker(i, self.seed) for i in range(THREADS)]
        started = time.monotonic()
        self.deadline = started + self.seconds
        run_threads(*(functools.partial(self.work, w) for w in workers), name="workload")
        ran = time.monotonic() - started
        self.finish()
        ops: Counter[str] = Counter()
        expected: Counter[str] = Counter()
        by_action: Counter[str] = Counter()
        for w in workers:
            ops.update(w.ops)
            expected.update(w.expected)
            by_action.update(w.expected_by_action)
        return {
            "seconds": round(ran, 2),
            "threads": THREADS,
            "seed": self.seed,
            "operations": sum(ops.values()),
            "ops": dict(sorted(ops.items())),
            "expected_exceptions": dict(sorted(expected.items())),
            "expected_by_action": dict(sorted(by_action.items())),
            "cross_thread_frees": sum(w.cross_thread_frees for w in workers),
            "heaps_replaced": self.heaps_replaced,
            "heaps_created": len(self.all_heaps),
            "failures": sum(self.failures.values()),
            "failure_kinds": dict(self.failures),
            "mimalloc_errors": int(lib.pmi_error_count()),
        }

    def drop_arrays(self) -> None:
        while self.arrays:
            array, value = self.arrays.pop()
            if not (array == value).all():
                self.fail("wrong content", f"an array left at the end is not all {value}")

    def finish(self) -> None:
        """With the threads gone: verify and free everything, close every heap, and count what is left."""
        while self.blocks:
            block, tag, _ = self.blocks.pop()
            try:
                self.check(block, tag, "a block left at the end")
                block.free()
            except Exception as exc:
                self.fail(f"end: {type(exc).__name__}", "".join(traceback.format_exception(exc)))
        self.drop_arrays()  # in a method of its own, so no local variable keeps the last one alive
        for heap in self.heaps + self.pending_close:
            try:
                heap.close()
            except Exception as exc:
                self.fail(f"end: {type(exc).__name__}", "".join(traceback.format_exception(exc)))
        gc.collect()
        leaked = [(heap.live_blocks, heap.live_bytes) for heap in self.all_heaps if heap.live_blocks or heap.live_bytes]
        if leaked:
            self.fail("live blocks at the end", f"{len(leaked)} heaps still count (blocks, bytes): {leaked[:5]}")
        if not all(heap.closed for heap in self.all_heaps):
            self.fail("end", "a heap is still open")


def _child(seconds: float, seed: int) -> int:
    import faulthandler

    faulthandler.dump_traceback_later(seconds * 2 + 45, exit=True)  # a hang prints every thread's stack
    workload = Workload(seconds, seed)
    summary = workload.run()
    faulthandler.cancel_dump_traceback_later()
    for kind, examples in workload.examples.items():
        sys.stderr.write(f"FAILURE {kind} ({workload.failures[kind]} times), for example:\n")
        for example in examples:
            sys.stderr.write("  " + example.rstrip().replace("\n", "\n  ") + "\n")
    print(json.dumps(summary), flush=True)
    return 1 if summary["failures"] or summary["mimalloc_errors"] else 0


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else SECONDS
    sys.exit(_child(seconds, int(sys.argv[2]) if len(sys.argv) > 2 else SEED))
