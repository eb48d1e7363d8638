"""Fork while another thread performs one public operation of pymimalloc, for every public operation in turn: each
forked child must still be able to do everything (make a heap, allocate, walk, print and read the statistics,
reserve an arena, collect, use numpy arrays in a heap).

Why: a fork copies every lock as it is at that instant, and the child has only the forking thread. A lock that
another thread held at the fork stays held in the child for good. A review found two public calls that could be
cut that way, print_stats() and Arena(): their children hung in their first Heap() or Arena()
(fork_print_stats.py, fork_reserve_arena.py). This program looks for their siblings everywhere: OPERATIONS holds
one entry per public callable (functions, classes, methods and properties), SKIPPED the few left out and why, and
tests/test_hostile_fork.py fails when a public name is in neither.

Usage: fork_every_operation.py [--rounds N] [NAME ...] (default: every operation, ROUNDS forks each). It prints
one line per operation and, at the end, raises AssertionError naming every operation whose children failed.
Importing this file (not running it) only defines the tables: the fixtures are made in main().
"""

from __future__ import annotations

import argparse
import io
import itertools
import sys
import threading
import time
from collections.abc import Callable

import numpy

import pymimalloc

Operation = Callable[[], object]

ROUNDS = 40  # forks per operation: 0.2-0.6 s each, 35-40 s for all 88 runs on 2 cores (release or checked build)
ARENA_BUDGET = 100  # Arena() reservations in all: mimalloc v3.4.3 manages at most 160 arenas (MI_MAX_ARENAS)
PURGE_DELAY = "purge_delay"  # the option the writes set: a time in ms, safe at any value


class Fixtures:
    """What the operations work on, made once in main() (never at import: the test imports only the tables)."""

    def __init__(self) -> None:
        self.heap = pymimalloc.Heap()  # the operations' heap: walked, allocated from, frozen by snapshots
        # something to walk and query: small, medium and large blocks
        self.kept = [self.heap.malloc(size) for size in (16, 64, 1000, 70_000) for _ in range(50)]
        self.array = self.heap.zeros(100)
        self.arena = pymimalloc.Arena(pymimalloc.Arena.min_size())
        self.arena_heap = pymimalloc.Heap(self.arena)
        self.arena_block = self.arena_heap.malloc(64)
        self.retired = pymimalloc.Arena(pymimalloc.Arena.min_size())  # released again and again (Arena.release)
        self.reserved: list[pymimalloc.Arena] = []
        self.collect_force = itertools.cycle([False, True])
        self.scope_kinds = itertools.cycle([0, 2, 3])  # see heap_scope()
        self.areas = self.heap.areas()
        self.blocks = self.heap.blocks()
        self.info = pymimalloc.process_info()

    def close(self) -> None:
        self.kept.clear()
        del self.array
        self.heap.close()
        self.arena_block.free()
        self.arena_heap.close()


F: Fixtures  # set by main()


def read(obj: object, names: str) -> None:
    """Read each attribute named in ``names`` (space-separated): the properties of a result, in one operation."""
    for name in names.split():
        getattr(obj, name)


# -- operations that need more than one line ----------------------------------------------------------------------
def reserve_arena() -> None:
    """Arena(): a reservation of address space, which is never given back. Once the budget is spent the thread
    sleeps instead, so that the main thread's forks are not slowed by a thread that spins."""
    if len(F.reserved) < ARENA_BUDGET:
        F.reserved.append(pymimalloc.Arena(pymimalloc.Arena.min_size()))
    else:
        time.sleep(0.001)


def heap_scope() -> None:
    """HeapScope(heap, kind), entered and left, for the kinds as_default (0), numpy_allocator (2) and freeze (3) in
    turn (csrc/pmi_python.c; the Heap methods make them in normal use). Kind 1, python_objects, refuses until
    mimalloc's hook is in place: Heap.python_objects() puts it there and makes that scope."""
    scope = pymimalloc.HeapScope(F.heap, next(F.scope_kinds))
    with scope:
        read(scope, "counters entered final heap held kind")
    read(scope, "counters entered final heap held kind")


def snapshot() -> None:
    with F.heap.snapshot() as snap:
        read(snap, "areas blocks counters entered final heap held kind live_blocks live_bytes stale")
    assert snap.stale


def new_snapshot() -> None:
    with pymimalloc.Snapshot(F.heap) as snap:
        assert snap.live_blocks >= len(F.kept)


def measure() -> None:
    with pymimalloc.measure() as measurement:
        kept = [str(i) for i in range(20)]
        read(measurement, "allocations blocks counters entered final heap held kept kind peak")
    read(measurement, "allocations blocks counters entered final heap held kept kind peak")
    del kept


def new_measurement() -> None:
    with pymimalloc.Measurement() as measurement:
        [str(i) for i in range(20)]
    assert measurement.allocations >= 0


def collecting() -> None:
    with pymimalloc.collecting(force=False) as result:
        F.heap.malloc(100_000)
    read(result, "after before commit_released force rss_released")


def python_objects() -> None:
    with F.heap.python_objects():
        [str(i) for i in range(20)]


def as_default() -> None:
    with F.heap.as_default():
        pymimalloc.malloc(64)


def numpy_allocator() -> None:
    with F.heap.numpy_allocator():
        numpy.ones(64)


def visit() -> None:
    F.heap.visit(lambda area, info: True)


def read_areas() -> None:
    for area in F.heap.areas():
        read(area, "address block_size committed full_block_size reserved used")


def read_blocks() -> None:
    for info in F.heap.blocks():
        read(info, "address area size")


def install_and_uninstall() -> None:
    """install() then uninstall(): each call routes CPython's allocations to mimalloc and back."""
    pymimalloc.install()
    pymimalloc.uninstall()


def set_option() -> None:
    """Two writes, the second back to the value at import: no other operation runs with the option changed."""
    pymimalloc.options[PURGE_DELAY] = 0
    pymimalloc.options[PURGE_DELAY] = pymimalloc.options.defaults[PURGE_DELAY]


def override_options() -> None:
    with pymimalloc.options.override(purge_delay=0):
        F.heap.malloc(64)


def preset_options() -> None:
    with pymimalloc.options.preset("fifo"):
        F.heap.malloc(64)


def new_heap_closed() -> None:
    pymimalloc.Heap().close()


def realloc() -> None:
    F.heap.realloc(F.heap.malloc(16), 5000)


# Name -> one run of that public operation. A name is "function", "Class" (its constructor), "Class.attribute" or
# "options.attribute"; several names share one function where one call reads them all (the fields of a result).
# The operations that install mimalloc's hook over CPython's allocator, which stays for the life of the process,
# come last, so that every other one runs first in a process without it.
OPERATIONS: dict[str, Operation] = {
    # functions
    "print_stats": lambda: pymimalloc.print_stats(file=io.StringIO()),
    "stats": pymimalloc.stats,
    "reset_stats": pymimalloc.reset_stats,
    "process_info": pymimalloc.process_info,
    "format_size": lambda: pymimalloc.format_size(123_456),
    "build_info": pymimalloc.build_info,
    "collect": lambda: pymimalloc.collect(next(F.collect_force)),
    "collecting": collecting,
    "default_heap": pymimalloc.default_heap,
    "main_heap": pymimalloc.main_heap,
    "main_heap().areas": lambda: pymimalloc.main_heap().areas(),  # a walk of the main heap stops the world
    "malloc": lambda: pymimalloc.malloc(64),
    "heap_of": lambda: pymimalloc.heap_of(F.kept[0]),
    "good_size": lambda: pymimalloc.good_size(1000),
    "usable_size": lambda: pymimalloc.usable_size(F.kept[1].address),
    "installed": pymimalloc.installed,
    # Heap
    "Heap": new_heap_closed,
    "Heap.close": new_heap_closed,
    "Heap.delete": lambda: pymimalloc.Heap().delete(),
    "Heap.destroy": lambda: pymimalloc.Heap().destroy(),
    "Heap.malloc": lambda: F.heap.malloc(64),
    "Heap.zalloc": lambda: F.heap.zalloc(64),
    "Heap.calloc": lambda: F.heap.calloc(4, 16),
    "Heap.malloc_aligned": lambda: F.heap.malloc_aligned(100, 256),
    "Heap.zalloc_aligned": lambda: F.heap.zalloc_aligned(100, 256),
    "Heap.realloc": realloc,
    "Heap.contains": lambda: F.heap.contains(F.kept[2]),
    "Heap.closed": lambda: F.heap.closed,
    "Heap.frozen": lambda: F.heap.frozen,
    "Heap.is_main": lambda: F.heap.is_main,
    "Heap.live_blocks": lambda: F.heap.live_blocks,
    "Heap.live_bytes": lambda: F.heap.live_bytes,
    "Heap.arena": lambda: F.arena_heap.arena,
    "Heap.stats": lambda: F.heap.stats(),
    "Heap.mimalloc_stats": lambda: F.heap.mimalloc_stats(),
    "Heap.collect": lambda: F.heap.collect(),
    "Heap.areas": lambda: F.heap.areas(),
    "Heap.blocks": lambda: F.heap.blocks(),
    "Heap.visit": visit,
    "Heap.snapshot": snapshot,
    "Heap.as_default": as_default,
    "Heap.numpy_allocator": numpy_allocator,
    "Heap.empty": lambda: F.heap.empty(64),
    "Heap.zeros": lambda: F.heap.zeros(64),
    "Heap.ones": lambda: F.heap.ones(64),
    "Heap.full": lambda: F.heap.full(64, 7.0),
    "Heap.empty_like": lambda: F.heap.empty_like(F.array),
    "Heap.zeros_like": lambda: F.heap.zeros_like(F.array),
    "Heap.asarray": lambda: F.heap.asarray([1.0, 2.0, 3.0]),
    # Block
    "Block.address": lambda: F.kept[0].address,
    "Block.size": lambda: F.kept[0].size,
    "Block.usable_size": lambda: F.kept[0].usable_size,
    "Block.heap": lambda: F.kept[0].heap,
    "Block.freed": lambda: F.kept[0].freed,
    "Block.exports": lambda: F.kept[0].exports,
    "Block.view": lambda: F.kept[0].view.release(),
    "Block.free": lambda: F.heap.malloc(64).free(),
    # Arena
    "Arena": reserve_arena,
    "Arena.address": lambda: F.arena.address,
    "Arena.size": lambda: F.arena.size,
    "Arena.released": lambda: F.arena.released,
    "Arena.contains": lambda: F.arena.contains(F.arena_block),
    "Arena.min_size": pymimalloc.Arena.min_size,
    "Arena.max_size": pymimalloc.Arena.max_size,
    "Arena.release": lambda: F.retired.release(),
    # the other classes: their constructors, and their fields and properties read from a fresh result
    "HeapScope": heap_scope,
    **dict.fromkeys((f"HeapScope.{name}" for name in "counters entered final heap held kind".split()), heap_scope),
    "Snapshot": new_snapshot,
    **dict.fromkeys((f"Snapshot.{name}" for name in
                     "areas blocks counters entered final heap held kind live_blocks live_bytes stale".split()), snapshot),
    "Area": lambda: pymimalloc.Area(*(getattr(F.areas[0], name) for name in
                                      "address reserved committed used block_size full_block_size".split())),
    **dict.fromkeys((f"Area.{name}" for name in
                     "address block_size committed full_block_size reserved used".split()), read_areas),
    "BlockInfo": lambda: pymimalloc.BlockInfo(F.blocks[0].address, F.blocks[0].size, F.blocks[0].area),
    **dict.fromkeys((f"BlockInfo.{name}" for name in "address area size".split()), read_blocks),
    "HeapStats": lambda: pymimalloc.HeapStats(1, 2, 3, 4, 5, 6, 7, 8),
    **dict.fromkeys((f"HeapStats.{name}" for name in "allocations huge_bytes live_blocks live_bytes pages "
                     "pages_abandoned peak_live_bytes peak_pages".split()),
                    lambda: read(F.heap.stats(), "allocations huge_bytes live_blocks live_bytes pages "
                                 "pages_abandoned peak_live_bytes peak_pages")),
    "ProcessInfo": lambda: pymimalloc.ProcessInfo(*range(9)),
    **dict.fromkeys((f"ProcessInfo.{name}" for name in "current_commit current_rss elapsed_ms page_faults "
                     "peak_commit peak_rss reserved system_ms user_ms".split()),
                    lambda: read(pymimalloc.process_info(), "current_commit current_rss elapsed_ms page_faults "
                                 "peak_commit peak_rss reserved system_ms user_ms")),
    "CollectResult": lambda: pymimalloc.CollectResult(False, F.info, F.info),
    **dict.fromkeys((f"CollectResult.{name}" for name in "after before commit_released force rss_released".split()),
                    collecting),
    # options: reads of every option and writes of purge_delay, which is safe at any value
    "options[name]": lambda: pymimalloc.options[PURGE_DELAY],
    "options[name] = value": set_option,
    "options.defaults": lambda: pymimalloc.options.defaults[PURGE_DELAY],
    "options.get": lambda: pymimalloc.options.get(PURGE_DELAY),
    "options.keys": lambda: list(pymimalloc.options.keys()),
    "options.values": lambda: list(pymimalloc.options.values()),
    "options.items": lambda: list(pymimalloc.options.items()),
    "options.override": override_options,
    "options.preset": preset_options,
    # mimalloc's hook over CPython's allocator: put in place by the first of these, it stays for good
    "Heap.python_objects": python_objects,
    "measure": measure,
    "Measurement": new_measurement,
    **dict.fromkeys((f"Measurement.{name}" for name in
                     "allocations blocks counters entered final heap held kept kind peak".split()), measure),
    "install": install_and_uninstall,
    "uninstall": install_and_uninstall,
}

# Public callables left out, and why.
SKIPPED: dict[str, str] = {
    "Block": "not constructible: Block() raises TypeError; Blocks come from Heap.malloc, zalloc, calloc, "
             "malloc_aligned and zalloc_aligned, which are covered",
}


# -- the forked child's check ----------------------------------------------------------------------------------------
def in_child() -> None:
    """Everything a process does with pymimalloc, in a child forked while another thread ran an operation."""
    with pymimalloc.Heap() as heap:  # the first Heap(): where the two known hangs waited
        block = heap.malloc(64)
        block.view[:5] = b"hello"
        assert heap.contains(block) and pymimalloc.heap_of(block) is heap
        array = heap.zeros(16)
        assert array.sum() == 0
        assert heap.visit(lambda area, info: True)
        with heap.snapshot() as snap:
            assert snap.live_blocks >= 1
        del array
        block.free()
    out = io.StringIO()
    pymimalloc.print_stats(file=out)
    assert out.getvalue()
    assert pymimalloc.stats()
    pymimalloc.process_info()
    with pymimalloc.Heap(pymimalloc.Arena(pymimalloc.Arena.min_size())) as heap:
        heap.malloc(64)
    pymimalloc.collect()
    pymimalloc.malloc(32).free()  # the main heap
    pymimalloc.main_heap().areas()
    with pymimalloc.options.override(purge_delay=0), pymimalloc.measure() as measurement:  # puts the hook in place
        kept = [str(i) for i in range(10)]
    assert measurement.allocations >= 0
    del kept
    pymimalloc.install()  # allocator.py's lock, which a fork takes first, and the hook's routing
    pymimalloc.uninstall()
    # the operations' heap: a snapshot or visit the other thread held open at the fork stays frozen in the child, as
    # documented (docs/reliability.md); otherwise it must be usable
    if not F.heap.frozen:
        F.heap.malloc(8).free()
        F.heap.areas()
    assert len(F.kept[0].view) == 16


def run(operation: Operation, rounds: int) -> None:
    """Run ``operation`` in a thread, over and over, while the main thread forks ``rounds`` times without pause."""
    from forking import fork_while_a_thread_runs  # only when run: it changes the switch interval when imported

    # Back to CPython's switch interval, and no pause between forks: the main thread then takes the GIL back, and
    # forks, mostly just as the other thread lets it go to enter a C call, the start of which is the window these
    # forks are for (as fork_print_stats.py).
    sys.setswitchinterval(0.005)

    def churn(stop: threading.Event) -> None:
        while not stop.is_set():
            operation()

    fork_while_a_thread_runs(churn, in_child, rounds=rounds, pause=None)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="fork while another thread runs each public operation")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="forks per operation")
    parser.add_argument("names", nargs="*", help="operations to run (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in OPERATIONS]
    if unknown:
        parser.error(f"unknown operations {unknown}; they are: {', '.join(OPERATIONS)}")
    # one run per function: the names that share one (the fields of a result) are run together
    runs: dict[Operation, list[str]] = {}
    for name in args.names or OPERATIONS:
        runs.setdefault(OPERATIONS[name], []).append(name)

    global F
    F = Fixtures()
    in_child()  # once here first: the child must not be the first to import or set up anything
    failures: list[str] = []
    start = time.monotonic()
    for operation, names in runs.items():
        began = time.monotonic()
        try:
            operation()  # once in this thread: an operation that cannot run at all fails here, plainly
            run(operation, args.rounds)
        except Exception as exc:  # noqa: BLE001 - every failing operation is reported, not only the first
            failures.append(f"{', '.join(names)}: {type(exc).__name__}: {exc}")
            outcome = "FAILED"
        else:
            outcome = "ok"
        print(f"{', '.join(names)}: {args.rounds} forks, {time.monotonic() - began:.2f} s, {outcome}", flush=True)
    print(f"{len(runs)} runs, {time.monotonic() - start:.1f} s", flush=True)
    F.close()
    assert not failures, "forked children failed while another thread ran:\n" + "\n".join(failures)


if __name__ == "__main__":
    main(sys.argv[1:])
