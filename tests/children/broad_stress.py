"""Every lifecycle at once, from many threads, for a few seconds: walks (of heaps, of the main heap, snapshots and
visits), Blocks and numpy arrays allocated in some threads and dropped in another (frees that a walk defers),
heaps closed and destroyed under all of that, short-lived threads, install() and uninstall(), python_objects()
blocks whose objects die elsewhere, and forks whose children use every heap. It is the suite's home for defects
that need several of these at once. On the commit before 72c10f9 it found that a fork during another thread's walk
left the child's heap frozen for good (4 of 9 runs of 8 s; fork_walk_heap.py is that one race). The walk that held
the world lock across its drain of deferred frees (the commit before f5f529a) it finds in a checked build, whose
schedule noise (csrc/pmi_internal.h) widens the window, once last_holder() drops the last blocks of small heaps
during walks: 3 of 3 runs of 8 s hung, 0 of 3 without the noise, and 1 of 3 in a release build (walk_thaw_close.py
is that one race).

argv: seconds, seed. What a step may meet is the documented refusal of a heap that another thread closed, froze
or pinned; anything else fails the thread, and so the run (the arena is never full: mimalloc reports every
allocation it refuses, and run_program fails on any report). A forked child must exit 0 (it prints what it raised).
A hang is the parent's to catch (run_program's timeout; faulthandler dumps the stacks first). Prints "OK" and how
often each step ran, as JSON; every kind must have run."""

import faulthandler
import io
import json
import os
import random
import sys
import threading
import time
import warnings
from collections.abc import Callable

from builds import memory_checker_build
from threads import threads_running

import pymimalloc

SECONDS, SEED = float(sys.argv[1]), int(sys.argv[2])
faulthandler.dump_traceback_later(SECONDS + 60, exit=True)
deadline = time.monotonic() + SECONDS
# Under a memory checker there are no forks here. GCC 12's AddressSanitizer has no fork handlers for its allocator, so
# a child forked while another thread was inside it (a thread starting or ending, a free) waited for a lock no thread
# of its own holds: gdb found such a child in SizeClassAllocator64::GetFromAllocator. That happened in 3 of 16 runs of
# 6 s at 2f3175b too. Every other build forks here.
FORKS = not memory_checker_build()
counts: dict[str, int] = {}
counts_lock = threading.Lock()
heaps_lock = threading.Lock()
arena = pymimalloc.Arena(1 << 30)  # never full (mimalloc reports every allocation it refuses): reserved, not used
heaps = [pymimalloc.Heap() for _ in range(3)] + [pymimalloc.Heap(arena)]
arena_heaps = [heaps[-1]]  # every heap ever made in the arena, for what they hold when an allocation fails
handoff: list[object] = []  # Blocks, arrays and objects, for the dropper thread to let go
HANDOFF_MAX = 20_000
# Heaps that a snapshot or visit in progress may hold frozen, by how many: a fork copies such a freeze (documented),
# so a child may find these frozen and no others. The forker holds the lock across os.fork().
scoped_freezes: dict[pymimalloc.Heap, int] = {}
scoped_lock = threading.Lock()
warnings.filterwarnings("ignore", "This process .* is multi-threaded, use of fork", DeprecationWarning)


def hand_off(items: "list[object]") -> None:
    """Give ``items`` to the dropper, unless it is behind (then they go here): what the threads hold stays bounded."""
    if len(handoff) < HANDOFF_MAX:
        handoff.extend(items)


def bump(kind: str) -> None:
    with counts_lock:
        counts[kind] = counts.get(kind, 0) + 1


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` is what a step on a heap may meet while other threads close, walk and pin it."""
    message = str(exc).split(": ", 1)[-1]  # after the name of the call that refused ("close: ...")
    if isinstance(exc, ValueError):
        return message.startswith("the heap is closed")
    if isinstance(exc, RuntimeError):
        return message.startswith(("the heap is frozen", "the heap is in use as", "more than 1024 heaps hold"))
    if isinstance(exc, BufferError):
        return message.startswith("blocks or arrays allocated from this heap are still in use")
    return False


def pick(rng: random.Random) -> pymimalloc.Heap:
    with heaps_lock:
        return rng.choice(heaps)


# Heaps whose blocks only last_holder() holds, which walkers walk too: their last block may go during a walk.
small_heaps: list[pymimalloc.Heap] = []


def replace(heap: pymimalloc.Heap, rng: random.Random) -> None:
    with heaps_lock:
        if heap in heaps:
            fresh = pymimalloc.Heap(arena) if rng.random() < 0.2 else pymimalloc.Heap()
            heaps[heaps.index(heap)] = fresh
            if fresh.arena is not None:
                arena_heaps.append(fresh)


def step(kind: str, heap: pymimalloc.Heap, call: Callable[[], object]) -> None:
    """Run ``call()``; count it as ``kind``, or as ``kind-refused`` if the heap refused as documented."""
    try:
        call()
        bump(kind)
    except (ValueError, RuntimeError, BufferError, MemoryError) as exc:
        if not refused(exc):
            held = sum(h.live_bytes for h in list(arena_heaps))
            raise AssertionError(f"{kind} on {heap!r} (arena: {heap.arena!r}, whose heaps hold {held} bytes, "
                                 f"{len(handoff)} objects to drop): {exc!r}") from exc
        bump(kind + "-refused")


def walker(seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        heap, k = pick(rng), rng.random()
        if small_heaps and rng.random() < 0.3:
            with heaps_lock:
                heap = rng.choice(small_heaps) if small_heaps else heap

        def snapshot() -> None:
            with heap.snapshot() as taken:
                len(taken.blocks)

        def visit() -> None:
            heap.visit(lambda area, block: True, blocks=rng.random() < 0.5)

        if k < 0.05:  # mimalloc's process-wide statistics: adding them up holds its lock of all heaps
            step("report", heap, lambda: pymimalloc.print_stats(file=io.StringIO()))
        elif k < 0.1:  # a heap's own statistics, which a close still deciding holds back
            step("heap-stats", heap, heap.mimalloc_stats)
        elif k < 0.3:
            step("walk", heap, heap.blocks)
        elif k < 0.55:
            step("walk", heap, heap.areas)
        elif k < 0.65:
            step("main-walk", heap, pymimalloc.main_heap().areas)
        else:
            with scoped_lock:
                scoped_freezes[heap] = scoped_freezes.get(heap, 0) + 1
            try:
                step("snapshot", heap, snapshot) if k < 0.8 else step("visit", heap, visit)
            finally:
                with scoped_lock:
                    scoped_freezes[heap] -= 1


def allocator(seed: int) -> None:
    rng = random.Random(seed)
    mine: list[object] = []
    while time.monotonic() < deadline:
        heap = pick(rng)

        def allocate() -> None:
            for _ in range(rng.randrange(1, 200)):
                mine.append(heap.malloc(rng.choice([16, 64, 200, 4096, 70000])))
            if rng.random() < 0.3:
                try:
                    mine.append(heap.zeros(rng.choice([10, 1000, 100000])))
                except MemoryError:  # numpy's one answer for a heap another thread froze or closed meanwhile
                    bump("zeros-refused")

        step("allocate", heap, allocate)
        if rng.random() < 0.5:
            rng.shuffle(mine)
            half = len(mine) // 2
            hand_off(mine[:half])
            del mine[:half]
        if len(mine) > 2000 or rng.random() < 0.05:
            mine.clear()


def dropper(seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        if handoff:
            del handoff[: rng.randrange(1, 500)]
            bump("drop")
        else:
            time.sleep(0.0005)


def closer(seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        time.sleep(rng.random() * 0.05)
        heap = pick(rng)
        step("close", heap, heap.close if rng.random() < 0.7 else heap.destroy)
        if heap.closed:
            replace(heap, rng)


def last_holder(seed: int) -> None:
    """Small heaps that walkers walk too, whose blocks all go at once, as soon as a walk holds the heap frozen (or
    after 10 ms), and which are closed as soon as they let the close in: the free of a heap's last block, which
    releases a closed heap, then runs wherever the frees were put off to (a walk's drain of its deferred frees)."""
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        heap = pymimalloc.Heap()
        blocks = [heap.malloc(64) for _ in range(rng.randrange(1, 3000))]
        with heaps_lock:
            small_heaps.append(heap)
        waited = time.monotonic() + 0.01
        while not heap.frozen and time.monotonic() < waited:
            time.sleep(0)
        blocks.clear()  # put off while a walk holds the heap frozen
        while True:
            try:
                heap.close()
                bump("last-close")
                break
            except RuntimeError as exc:
                if not refused(exc):
                    raise
                time.sleep(0)  # frozen still: the walk has not let go yet
        with heaps_lock:
            small_heaps.remove(heap)


def objects(seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        heap = pick(rng)

        def made_there() -> None:
            with heap.python_objects():
                made = [str(i) * 3 for i in range(rng.randrange(10, 3000))] + [{"a": i} for i in range(100)]
            hand_off(made)

        step("objects", heap, made_there)


def short_lived(seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        def short() -> None:
            heap = pick(rng)
            step("short-lived", heap, lambda: hand_off([heap.malloc(32) for _ in range(50)]))

        with threads_running(*[short] * 4):
            pass


def installer(seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        time.sleep(rng.random() * 0.05)
        pymimalloc.install() if rng.random() < 0.6 else pymimalloc.uninstall()
        bump("install")


def child() -> int:
    """In a forked child: every heap works (or refuses as documented), and none is frozen but by a snapshot or visit
    the parent had open at the fork."""
    for heap in list(heaps):
        if heap.frozen and not scoped_freezes.get(heap, 0):
            return 3  # a walk's freeze copied from the parent, with no thread left to thaw it
        try:
            heap.malloc(8).free()
            heap.blocks()
        except (ValueError, RuntimeError, BufferError) as exc:
            if not refused(exc):
                raise
    fresh = pymimalloc.Heap()
    fresh.malloc(8).free()
    fresh.blocks()
    fresh.close()
    pymimalloc.main_heap().areas()
    return 0


def forker(seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        time.sleep(0.02 + rng.random() * 0.05)
        with scoped_lock:
            pid = os.fork()
        if pid == 0:
            status = 2
            try:
                import signal
                signal.alarm(30)  # not faulthandler's watchdog: its lock may be the parent's
                status = child()
            except BaseException:
                import traceback
                traceback.print_exc()  # the parent fails on status 2; this says why
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, f"a forked child exited with {os.waitstatus_to_exitcode(status)}"
        bump("fork")


roles = [walker, walker, allocator, allocator, dropper, closer, objects, short_lived, installer, *([forker] if FORKS else []),
         last_holder]
with threads_running(*[lambda role=role, i=i: role(SEED * 100 + i) for i, role in enumerate(roles)], name="stress"):
    pass
handoff.clear()
kinds = {"walk", "main-walk", "snapshot", "visit", "report", "allocate", "drop", "close", "objects", "short-lived",
         "install", "last-close"} | ({"fork"} if FORKS else set())
missing = sorted(kind for kind in kinds if counts.get(kind, 0) + counts.get(kind + "-refused", 0) == 0)
assert not missing, f"never ran: {missing} ({counts})"
print("OK", json.dumps(dict(sorted(counts.items()))))
