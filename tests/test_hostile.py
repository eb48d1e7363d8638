"""Regression tests for hostile uses of the API: copies, odd alignments and options, default heaps that
escape their scope, races between frees, walks and closes, fork, misuse of context managers, and limits.

Every scenario that could crash, abort or hang the interpreter runs in a child process (``run_child``),
which must exit 0 with nothing on stderr (unless a test says otherwise) and without mimalloc reporting an
error (``pmi_error_count() == 0``). A hang is caught by faulthandler inside the child (it dumps every
thread's stack and exits 1) and, failing that, by a timeout that kills the child's whole process group.
"""
from __future__ import annotations

import copy
import functools
import gc
import os
import pickle
import subprocess
import textwrap
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

import pymimalloc
from childproc import describe, run


# Appended to every child unless it expects mimalloc to report errors (out of memory).
_NO_MIMALLOC_ERRORS = """
from pymimalloc._core import lib as _pmi_lib
assert _pmi_lib.pmi_error_count() == 0, (
    f"mimalloc reported {_pmi_lib.pmi_error_count()} error(s), last errno {_pmi_lib.pmi_error_last()}"
)
"""


def _empty(stderr: str) -> bool:
    return stderr == ""


def _only_mimalloc_reports(stderr: str) -> bool:
    """Checked builds print mimalloc's warnings and errors (show_errors); nothing else may appear."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return all(line.startswith("mimalloc: ") and "assertion failed" not in line for line in lines)


def run_child(
    code: str,
    *,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    stderr_ok: Callable[[str], bool] = _empty,
    check_mimalloc_errors: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a fresh interpreter; fail the test unless it exits 0 and ``stderr_ok``
    accepts its stderr (by default: empty). Returns the finished process (stdout, stderr)."""
    body = textwrap.dedent(code)
    if check_mimalloc_errors:
        body += _NO_MIMALLOC_ERRORS
    watchdog = max(1.0, timeout - 5.0)  # a hang dumps every thread's stack before the hard timeout
    script = f"import faulthandler\nfaulthandler.dump_traceback_later({watchdog}, exit=True)\n" + body
    result = run(["-c", script], env=env, timeout=timeout)  # a hang is killed, with "hung for" on stderr
    if result.returncode != 0 or not stderr_ok(result.stderr):
        pytest.fail(
            f"child {describe(result.returncode)}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result


# ----------------------------------------------------------------------------------------------------------
# item 1: copy, deepcopy and pickle
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_copy_of_a_block_is_an_independent_block(duplicate: Callable[[Any], Any]) -> None:
    run_child(f"""
        import copy
        import pymimalloc

        duplicate = copy.{duplicate.__name__}
        heap = pymimalloc.Heap()
        original = heap.malloc(100)
        original.view[:] = bytes(range(100))
        twin = duplicate(original)
        assert type(twin) is pymimalloc.Block, type(twin)
        assert twin is not original
        assert twin.heap is heap and twin in heap and pymimalloc.heap_of(twin) is heap
        assert twin.size == 100
        twin_address = twin.address
        assert twin_address not in (0, original.address), (twin_address, original.address)
        assert bytes(twin.view) == bytes(range(100))
        assert heap.live_blocks == 2, heap.live_blocks

        twin.view[0] = 255                      # independent contents, both ways
        assert original.view[0] == 0
        original.view[1] = 254
        assert twin.view[1] == 1
        twin.view[0] = 0
        original.view[1] = 1

        moved = heap.realloc(original, 4096)    # the original's memory is freed...
        assert original.freed
        reuse = [heap.malloc(100) for _ in range(16)]   # ...and handed out again
        for block in reuse:
            block.view[:] = b"\\xee" * 100
        del block
        assert not twin.freed
        assert twin.address == twin_address and twin.address != 0
        assert bytes(twin.view) == bytes(range(100))
        assert bytes(moved.view[:100]) == bytes(range(100))
        assert heap.live_blocks == 2 + len(reuse), heap.live_blocks

        twin.free()
        moved.free()
        del reuse
        assert heap.live_blocks == 0, heap.live_blocks
        heap.destroy()                          # strict: nothing may still be alive
    """)


def test_pickling_a_block_raises_type_error() -> None:
    run_child("""
        import pickle
        import pymimalloc

        heap = pymimalloc.Heap()
        block = heap.malloc(64)
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            try:
                pickle.dumps(block, protocol=protocol)
            except TypeError:
                pass
            else:
                raise AssertionError(f"pickle.dumps(block, protocol={protocol}) did not raise TypeError")
        block.view[:4] = b"okay"
        assert bytes(block.view[:4]) == b"okay"
        block.free()
        heap.destroy()
    """)


@functools.cache
def _shared_arena() -> pymimalloc.Arena:
    # an arena's memory stays reserved for the life of the process: reserve one for all cases
    return pymimalloc.Arena(pymimalloc.Arena.min_size())


_UNCOPYABLE: dict[str, Callable[[pymimalloc.Heap], object]] = {
    "heap": lambda heap: heap,
    "main_heap": lambda heap: pymimalloc.main_heap(),
    "snapshot": lambda heap: heap.snapshot(),
    "arena": lambda heap: _shared_arena(),
    "options": lambda heap: pymimalloc.options,
}


@pytest.mark.parametrize("operation", [copy.copy, copy.deepcopy, pickle.dumps], ids=["copy", "deepcopy", "pickle"])
@pytest.mark.parametrize("make", list(_UNCOPYABLE.values()), ids=list(_UNCOPYABLE))
def test_copying_or_pickling_a_resource_raises_type_error(
    heap: pymimalloc.Heap, make: Callable[[pymimalloc.Heap], object], operation: Callable[[object], object]
) -> None:
    target = make(heap)
    with pytest.raises(TypeError):
        operation(target)


def test_copying_or_pickling_a_live_snapshot_raises_type_error() -> None:
    run_child("""
        import copy, pickle
        import pymimalloc

        heap = pymimalloc.Heap()
        keep = heap.malloc(8)
        with heap.snapshot() as snap:
            for operation in (copy.copy, copy.deepcopy, pickle.dumps):
                try:
                    operation(snap)
                except TypeError:
                    pass
                else:
                    raise AssertionError(f"{operation.__name__} of a live snapshot did not raise TypeError")
        keep.free()
        heap.malloc(8).free()
        heap.destroy()
    """)


def test_records_copy_and_pickle_round_trip(heap: pymimalloc.Heap) -> None:
    blocks = [heap.malloc(n) for n in (16, 300, 5000)]
    records: list[object] = [heap.areas()[0], heap.blocks()[0], pymimalloc.process_info()]
    for record in records:
        assert copy.copy(record) == record
        assert copy.deepcopy(record) == record
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            restored = pickle.loads(pickle.dumps(record, protocol=protocol))
            assert type(restored) is type(record) and restored == record
    del blocks


# ----------------------------------------------------------------------------------------------------------
# item 2: large alignments survive their heap's close
# ----------------------------------------------------------------------------------------------------------


def test_large_aligned_blocks_survive_heap_close() -> None:
    run_child("""
        import pymimalloc

        for alignment in (128 << 10, 256 << 10, 1 << 20, 4 << 20):
            heap = pymimalloc.Heap()
            block = heap.malloc_aligned(100, alignment)
            assert block.address % alignment == 0, (alignment, hex(block.address))
            block.view[:] = b"x" * 100
            heap.close()
            assert heap.closed
            assert block.size == 100 and bytes(block.view) == b"x" * 100, alignment
            block.free()
        pymimalloc.collect(True)
    """)


# ----------------------------------------------------------------------------------------------------------
# item 3: disallow_arena_alloc
# ----------------------------------------------------------------------------------------------------------


def test_blocks_survive_heap_close_with_arena_allocation_disallowed() -> None:
    run_child("""
        import pymimalloc

        pymimalloc.options["disallow_arena_alloc"] = 1
        for size in (300, 5000, 70000, 1 << 20):
            heap = pymimalloc.Heap()
            block = heap.malloc(size)
            block.view[:] = b"x" * size
            heap.close()
            assert heap.closed
            assert bytes(block.view) == b"x" * size, size
            block.free()
        pymimalloc.collect(True)
    """)


# ----------------------------------------------------------------------------------------------------------
# item 4: as_default() is scoped like a ContextVar (per thread, per asyncio task)
# ----------------------------------------------------------------------------------------------------------

# Shared by the item 4 children: what must never crash, whatever the default heap has become.
_PROBE = """
import pymimalloc
from pymimalloc._core import lib

def probe():
    try:
        block = pymimalloc.malloc(8)
    except ValueError:
        pass  # the default heap is a closed heap: the documented answer
    else:
        assert isinstance(block, pymimalloc.Block), block
        block.view[:] = b"12345678"
        assert bytes(block.view) == b"12345678"
        block.free()
    pymimalloc.collect()
    assert isinstance(pymimalloc.default_heap(), pymimalloc.Heap)
    if hasattr(lib, "mi_malloc"):  # mimalloc's own allocation in this thread
        pointer = lib.mi_malloc(64)
        lib.mi_free(pointer)
    return True
"""


@pytest.mark.parametrize("finish", ["closed_in_other_thread", "collected_in_main_thread"])
def test_as_default_generator_finished_elsewhere_does_not_crash(finish: str) -> None:
    run_child(_PROBE + f"""
import gc, sys
from concurrent.futures import ThreadPoolExecutor

finish = {finish!r}
t1, t2 = ThreadPoolExecutor(1), ThreadPoolExecutor(1)   # one thread each, reused for every call
heap = pymimalloc.Heap()

def gen():
    with heap.as_default():
        yield 1
        yield 2

g = gen()
assert t1.submit(next, g).result() == 1
if finish == "closed_in_other_thread":
    try:
        t2.submit(g.close).result()
    except (RuntimeError, ValueError):
        pass  # leaving the block in another thread is misuse: refusing it is allowed, crashing is not
else:
    unraisable = []
    sys.unraisablehook = lambda report: unraisable.append(report.exc_value)
    del g
    gc.collect()
    sys.unraisablehook = sys.__unraisablehook__
    unexpected = [e for e in unraisable if not isinstance(e, (RuntimeError, ValueError))]
    assert not unexpected, unexpected

try:
    heap.close()
except RuntimeError:
    pass  # still pinned as some thread's default: allowed
for executor in (t1, t2):
    assert executor.submit(probe).result()
assert probe()
t1.shutdown()
t2.shutdown()
""")


def test_as_default_exited_out_of_order_does_not_crash() -> None:
    run_child(_PROBE + """
import threading

h1, h2 = pymimalloc.Heap(), pymimalloc.Heap()
a = h1.as_default()
a.__enter__()
b = h2.as_default()
b.__enter__()
assert pymimalloc.default_heap() is h2
a.__exit__(None, None, None)
b.__exit__(None, None, None)
h1.close()
h2.close()
assert h1.closed and h2.closed
assert probe()
results = []
other = threading.Thread(target=lambda: results.append(probe()))
other.start()
other.join()
assert results == [True], results
""")


def test_as_default_is_scoped_per_asyncio_task() -> None:
    run_child(_PROBE + """
import asyncio

heaps = [pymimalloc.Heap(), pymimalloc.Heap()]
seen = []

async def task(i):
    heap = heaps[i]
    with heap.as_default():
        for _ in range(3):
            await asyncio.sleep(0)
            current = pymimalloc.default_heap()
            assert current is heap, (i, current, heap)
            block = pymimalloc.malloc(8)
            assert block.heap is heap, (i, block.heap, heap)
            seen.append(i)
    return i

async def main():
    return await asyncio.gather(task(0), task(1))

assert asyncio.run(main()) == [0, 1]
assert seen == [0, 1] * 3, seen  # the tasks really interleaved
assert pymimalloc.default_heap() is pymimalloc.main_heap()
for heap in heaps:
    heap.close()
    assert heap.closed
assert probe()
block = pymimalloc.malloc(8)
assert block.heap is pymimalloc.main_heap()
block.free()
""")


# ----------------------------------------------------------------------------------------------------------
# item 5: a thread frees its own blocks while another closes the heap
# ----------------------------------------------------------------------------------------------------------


def test_freeing_own_blocks_while_heap_closes_reports_no_mimalloc_error() -> None:
    run_child("""
        import sys, threading
        import pymimalloc

        sys.setswitchinterval(1e-5)
        errors = []
        for _ in range(200):
            heap = pymimalloc.Heap()
            ready = threading.Event()

            def worker():
                try:
                    blocks = [heap.malloc(n) for n in (16, 100, 1000, 5000, 70000) * 100]
                    ready.set()
                    for block in blocks:
                        block.free()
                except BaseException as exc:
                    errors.append(exc)
                    ready.set()

            thread = threading.Thread(target=worker)
            thread.start()
            ready.wait()
            heap.close()
            thread.join()
            assert heap.closed
            assert not errors, errors[:3]
    """)


# ----------------------------------------------------------------------------------------------------------
# item 6: address queries race with aligned allocation and free
# ----------------------------------------------------------------------------------------------------------


def test_address_queries_race_with_aligned_alloc_and_free() -> None:
    run_child("""
        import sys, threading, time
        import pymimalloc

        sys.setswitchinterval(1e-5)
        heap = pymimalloc.Heap()
        published = [0]
        errors = []
        deadline = time.monotonic() + 2.0

        def producer():
            try:
                while time.monotonic() < deadline:
                    block = heap.malloc_aligned(100, 1 << 20)
                    published.append(block.address)
                    if len(published) > 1000:
                        del published[:500]
                    block.free()
            except BaseException as exc:
                errors.append(exc)

        def prober():
            probes = 0
            try:
                while time.monotonic() < deadline:
                    address = published[-1]
                    owner = pymimalloc.heap_of(address)
                    assert owner is None or isinstance(owner, pymimalloc.Heap), owner
                    assert isinstance(address in heap, bool)   # the heap is never closed: no ValueError
                    try:
                        size = pymimalloc.usable_size(address)
                    except ValueError:
                        pass  # not (or no longer) a mimalloc block
                    else:
                        assert size >= 0
                    probes += 1
                assert probes > 0
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=producer)] + [threading.Thread(target=prober) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert len(published) > 1
        heap.close()
    """)


# ----------------------------------------------------------------------------------------------------------
# item 7: concurrent walks of one heap
# ----------------------------------------------------------------------------------------------------------


def test_concurrent_walks_of_one_heap_each_see_every_live_block() -> None:
    run_child("""
        import sys, threading, time
        import pymimalloc

        sys.setswitchinterval(1e-5)
        heap = pymimalloc.Heap()
        keep = [heap.malloc(n) for n in (16, 300, 5000, 70000) * 250]
        LIVE = len(keep)
        assert LIVE == 1000 and len(list(heap.blocks())) == LIVE

        def by_blocks():
            return len(list(heap.blocks()))

        def by_areas():
            return sum(area.used for area in heap.areas())

        def by_visit():
            found = []
            assert heap.visit(lambda area, info: found.append(info is not None) or True) is True
            return sum(found)

        def by_snapshot():
            with heap.snapshot() as snap:
                return snap.live_blocks

        walks = [by_blocks, by_areas, by_visit, by_snapshot]
        errors = []
        counts = [0] * 4
        deadline = time.monotonic() + 2.0

        def walker(k):
            i = k
            try:
                while time.monotonic() < deadline:
                    walk = walks[i % len(walks)]
                    seen = walk()
                    assert seen == LIVE, (walk.__name__, seen)
                    counts[k] += 1
                    i += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=walker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert all(counts), counts
        heap.malloc(8).free()  # thawed
        assert len(list(heap.blocks())) == LIVE
        del keep
        heap.destroy()
    """)


# ----------------------------------------------------------------------------------------------------------
# item 8: walking the main heap while other heaps close into it
# ----------------------------------------------------------------------------------------------------------


def test_walking_main_heap_while_heaps_close_into_it() -> None:
    run_child("""
        import sys, threading, time
        import pymimalloc

        sys.setswitchinterval(1e-5)
        main = pymimalloc.main_heap()
        errors = []
        done = {"walks": 0, "heaps": 0}
        deadline = time.monotonic() + 2.0

        def walker():
            try:
                while time.monotonic() < deadline:
                    list(main.blocks())
                    done["walks"] += 1
            except BaseException as exc:
                errors.append(exc)

        def churn():
            try:
                while time.monotonic() < deadline:
                    h = pymimalloc.Heap()
                    keep = [h.malloc(n) for n in (16, 300, 5000)]
                    h.close()
                    del keep
                    done["heaps"] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=walker)] + [threading.Thread(target=churn) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert done["walks"] > 0 and done["heaps"] > 0, done
        list(main.blocks())
    """)


# ----------------------------------------------------------------------------------------------------------
# item 9: walking a heap while short-lived threads allocate from it
# ----------------------------------------------------------------------------------------------------------


def test_walking_a_heap_while_short_lived_threads_allocate_and_exit() -> None:
    run_child("""
        import gc, sys, threading, time
        import pymimalloc

        sys.setswitchinterval(1e-5)
        heap = pymimalloc.Heap()
        kept = []
        kept_lock = threading.Lock()
        errors = []
        stop = threading.Event()
        SIZES = (16, 100, 1000, 5000)

        def walker():
            try:
                while not stop.is_set():
                    list(heap.blocks())
            except BaseException as exc:
                errors.append(exc)

        def visitor():
            try:
                mine = []
                for i in range(100):
                    while True:
                        try:
                            mine.append(heap.malloc(SIZES[i % len(SIZES)]))
                            break
                        except RuntimeError:
                            time.sleep(0)  # frozen by the walk (documented): try again
                for block in mine[::2]:
                    try:
                        block.free()
                    except RuntimeError:
                        pass  # frozen: dropping it frees it when the walk ends (documented)
                with kept_lock:
                    kept.extend(mine[1::2])
            except BaseException as exc:
                errors.append(exc)

        walking = threading.Thread(target=walker)
        walking.start()
        deadline = time.monotonic() + 2.0
        started = 0
        try:
            while time.monotonic() < deadline and started < 400:
                batch = [threading.Thread(target=visitor) for _ in range(4)]
                for t in batch:
                    t.start()
                for t in batch:
                    t.join()
                started += len(batch)
        finally:
            stop.set()
            walking.join()
        assert not errors, errors[:3]
        gc.collect()
        assert len(kept) == 50 * started, (len(kept), started)
        assert heap.live_blocks == len(kept), (heap.live_blocks, len(kept))
        assert len(list(heap.blocks())) == len(kept)
        kept.clear()
        heap.close()
    """)


# ----------------------------------------------------------------------------------------------------------
# item 10: usable_size of an interior address
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.exact_block_sizes
def test_usable_size_of_an_interior_address_counts_from_there() -> None:
    run_child("""
        import numpy as np
        import pymimalloc

        heap = pymimalloc.Heap()
        block = heap.malloc(100)
        whole = pymimalloc.usable_size(block.address)
        assert whole >= 100, whole
        assert pymimalloc.usable_size(block) == whole
        view = block.view
        assert pymimalloc.usable_size(view) == whole
        for offset in (1, 7, 50, 99):
            inner = view[offset:]
            assert pymimalloc.usable_size(inner) == whole - offset, (offset, pymimalloc.usable_size(inner), whole)
            inner.release()
        view.release()
        block.free()

        a = heap.zeros(100, dtype=np.uint8)
        assert pymimalloc.usable_size(a) >= 100
        assert pymimalloc.usable_size(a[10:]) == pymimalloc.usable_size(a) - 10
        del a
        heap.close()
    """)


# ----------------------------------------------------------------------------------------------------------
# item 11: guarded_sample_rate is refused
# ----------------------------------------------------------------------------------------------------------


def test_setting_guarded_sample_rate_raises_value_error() -> None:
    run_child("""
        import pymimalloc
        from pymimalloc import options

        assert options["guarded_sample_rate"] == 0
        try:
            options["guarded_sample_rate"] = 1
        except ValueError as exc:
            assert "guarded_sample_rate" in str(exc), str(exc)
        else:
            raise AssertionError("options['guarded_sample_rate'] = 1 did not raise ValueError")
        assert options["guarded_sample_rate"] == 0
        try:
            with options.override(guarded_sample_rate=1):
                raise AssertionError("options.override(guarded_sample_rate=1) entered its block")
        except ValueError:
            pass
        assert options["guarded_sample_rate"] == 0
        with pymimalloc.Heap() as heap:
            block = heap.malloc(8 << 20)
            block.view[-1:] = b"!"
            block.free()
    """)


def test_guarded_sample_rate_from_environment_is_neutralised() -> None:
    result = run_child(
        """
        import pymimalloc

        heap = pymimalloc.Heap()
        block = heap.malloc(8 << 20)
        block.view[:] = b"g" * (8 << 20)
        assert bytes(block.view[-3:]) == b"ggg"
        block.free()
        blocks = [heap.malloc(n) for n in (16, 1000, 8 << 20)]
        del blocks
        heap.close()
        """,
        env={"MIMALLOC_GUARDED_SAMPLE_RATE": "1"},
        stderr_ok=lambda err: "guarded_sample_rate" in err and "Traceback" not in err,
    )
    assert "guarded_sample_rate" in result.stderr


# ----------------------------------------------------------------------------------------------------------
# item 12: a full arena
# ----------------------------------------------------------------------------------------------------------


def test_second_heap_in_a_full_arena_raises_memory_error_or_succeeds() -> None:
    run_child(
        """
        import pymimalloc

        arena = pymimalloc.Arena(pymimalloc.Arena.min_size())
        h1 = pymimalloc.Heap(arena=arena)
        blocks = []
        for _ in range(arena.size // (1 << 20) + 64):
            try:
                blocks.append(h1.malloc(1 << 20))
            except MemoryError:
                break
        else:
            raise AssertionError(f"an arena of {arena.size} bytes never filled up")
        assert blocks and all(b in arena for b in blocks)
        try:
            h2 = pymimalloc.Heap(arena=arena)
        except MemoryError:
            h2 = None  # no room left even for the new heap: refused cleanly
        if h2 is not None:
            try:
                block = h2.malloc(64)
            except MemoryError:
                pass
            else:
                assert block in arena
                block.free()
            h2.close()
        blocks.clear()
        h1.close()
        """,
        stderr_ok=_only_mimalloc_reports,
        check_mimalloc_errors=False,  # out of memory is reported on purpose
    )


# ----------------------------------------------------------------------------------------------------------
# items 13 and 14: fork while another thread allocates
# ----------------------------------------------------------------------------------------------------------

_FORK_PRELUDE = """
import os, random, signal, sys, threading, time, traceback, warnings
import pymimalloc

warnings.filterwarnings("ignore", category=DeprecationWarning)  # 3.12+: fork() of a multi-threaded process
sys.setswitchinterval(1e-5)

def wait_for(pid):
    deadline = time.monotonic() + 10.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked child {pid} hung for 10 s")
        time.sleep(0.005)

def fork_and_check(in_child, rounds=20):
    for i in range(rounds):
        time.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                in_child()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        status = wait_for(pid)
        assert status == 0, f"forked child {i} exited with {status}"
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_a_thread_allocates_child_can_close_heap() -> None:
    run_child(_FORK_PRELUDE + """
heap = pymimalloc.Heap()
stop = threading.Event()
errors = []

def churn():
    try:
        while not stop.is_set():
            blocks = [heap.malloc(n) for n in (16, 300, 5000, 70000)]
            for block in blocks:
                block.free()
    except BaseException as exc:
        errors.append(exc)

def in_child():
    heap.close()
    assert heap.closed

worker = threading.Thread(target=churn, daemon=True)
worker.start()
try:
    fork_and_check(in_child)
finally:
    stop.set()
    worker.join()
assert not errors, errors[:3]
heap.close()
""", timeout=30)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_a_thread_reallocates_child_can_use_its_blocks() -> None:
    run_child(_FORK_PRELUDE + """
heap = pymimalloc.Heap()
mine = heap.malloc(100)
mine.view[:] = b"m" * 100
stop = threading.Event()
errors = []

def churn():
    rng = random.Random(14)
    try:
        block = heap.malloc(64)
        while not stop.is_set():
            block = heap.realloc(block, rng.randrange(1, 200_000))
        block.free()
    except BaseException as exc:
        errors.append(exc)

def in_child():
    assert bytes(mine.view) == b"m" * 100
    extra = heap.malloc(8)
    extra.view[:] = b"12345678"
    assert bytes(extra.view) == b"12345678"
    extra.free()
    heap.close()
    assert heap.closed

worker = threading.Thread(target=churn, daemon=True)
worker.start()
try:
    fork_and_check(in_child)
finally:
    stop.set()
    worker.join()
assert not errors, errors[:3]
assert bytes(mine.view) == b"m" * 100
mine.free()
heap.close()
""", timeout=30)


# ----------------------------------------------------------------------------------------------------------
# item 15: destroy_on_exit is refused
# ----------------------------------------------------------------------------------------------------------


def test_setting_destroy_on_exit_raises_value_error() -> None:
    run_child("""
        from pymimalloc import options

        assert options["destroy_on_exit"] == 0
        try:
            options["destroy_on_exit"] = 1
        except ValueError as exc:
            assert "destroy_on_exit" in str(exc), str(exc)
        else:
            raise AssertionError("options['destroy_on_exit'] = 1 did not raise ValueError")
        assert options["destroy_on_exit"] == 0
    """)


def test_destroy_on_exit_from_environment_exits_cleanly() -> None:
    run_child(
        """
        import pymimalloc

        heap = pymimalloc.Heap()
        block = heap.malloc(1000)
        block.view[:] = b"z" * 1000
        array = heap.zeros(1000)
        main_block = pymimalloc.malloc(100)
        # exit with all of them alive: Python frees them during finalization
        """,
        env={"MIMALLOC_DESTROY_ON_EXIT": "1"},
        timeout=30,
        stderr_ok=lambda err: err == "" or ("destroy_on_exit" in err and "Traceback" not in err),
    )


# ----------------------------------------------------------------------------------------------------------
# item 16: a frozen heap is not a closed heap
# ----------------------------------------------------------------------------------------------------------


def test_frozen_heap_is_not_closed(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    with heap.snapshot():
        assert heap.closed is False
        assert "frozen" in repr(heap), repr(heap)
        assert heap.__enter__() is heap
    assert not heap.closed
    block.free()


def test_frozen_heap_does_not_contain_an_impossible_address(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    with heap.snapshot():
        assert heap.contains(2**70) is False
        assert (2**70 in heap) is False
    block.free()


def test_frozen_heap_refuses_another_threads_allocation_with_runtime_error(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    outcome: list[object] = []

    def allocate() -> None:
        try:
            outcome.append(heap.malloc(8))
        except Exception as exc:  # noqa: BLE001 - any outcome is reported below
            outcome.append(exc)

    with heap.snapshot():
        other = threading.Thread(target=allocate)
        other.start()
        other.join()
    assert len(outcome) == 1 and type(outcome[0]) is RuntimeError, outcome
    outcome.clear()
    block.free()


# ----------------------------------------------------------------------------------------------------------
# item 17: a refused destroy()/close() does not disturb other threads
# ----------------------------------------------------------------------------------------------------------


def test_refused_destroy_and_close_do_not_disturb_other_threads() -> None:
    run_child("""
        import sys, threading, time
        import pymimalloc

        sys.setswitchinterval(1e-5)
        heap = pymimalloc.Heap()
        pinned = heap.malloc(64)
        pinned.view[:] = b"p" * 64
        stop = threading.Event()
        failures = []
        done = [0]

        def worker():
            while not stop.is_set():
                try:
                    block = heap.malloc(100)
                    block.view[:1] = b"w"
                    block.free()
                    done[0] += 1
                except BaseException as exc:
                    failures.append(repr(exc))

        thread = threading.Thread(target=worker)
        thread.start()
        refused = {"destroy": 0, "as_default": 0, "numpy_allocator": 0}
        deadline = time.monotonic() + 2.0
        try:
            while time.monotonic() < deadline:
                try:
                    heap.destroy()
                except BufferError:
                    refused["destroy"] += 1
                else:
                    raise AssertionError("destroy() succeeded while a block was alive")
                with heap.as_default():
                    try:
                        heap.close()
                    except RuntimeError:
                        refused["as_default"] += 1
                    else:
                        raise AssertionError("close() succeeded inside as_default()")
                with heap.numpy_allocator():
                    try:
                        heap.close()
                    except RuntimeError:
                        refused["numpy_allocator"] += 1
                    else:
                        raise AssertionError("close() succeeded inside numpy_allocator()")
        finally:
            stop.set()
            thread.join()
        assert not failures, (len(failures), failures[:5])
        assert done[0] > 0 and all(refused.values()), (done, refused)
        assert not heap.closed
        assert bytes(pinned.view) == b"p" * 64
        pinned.free()
        heap.close()
        assert heap.closed
    """)


# ----------------------------------------------------------------------------------------------------------
# item 18: Snapshot.__exit__ misuse
# ----------------------------------------------------------------------------------------------------------


def test_snapshot_exit_thaws_only_what_its_enter_froze() -> None:
    run_child("""
        import pymimalloc

        def assert_frozen(heap, why):
            try:
                heap.malloc(8)
            except RuntimeError:
                pass
            else:
                raise AssertionError(f"heap.malloc succeeded on a frozen heap ({why})")

        heap = pymimalloc.Heap()
        block = heap.malloc(32)

        never = heap.snapshot()
        never.__exit__(None, None, None)          # never entered: nothing to thaw
        assert not heap.closed
        heap.malloc(8).free()
        with heap.snapshot():
            assert_frozen(heap, "snapshot after a stray __exit__")

        once = heap.snapshot()
        once.__enter__()
        assert_frozen(heap, "entered by hand")
        once.__exit__(None, None, None)
        once.__exit__(None, None, None)           # the second exit does nothing
        block.free()
        second = heap.malloc(16)

        with heap.snapshot():
            inner = heap.snapshot()
            inner.__enter__()
            inner.__exit__(None, None, None)
            assert_frozen(heap, "inside the outer snapshot, after an inner one exited")
            inner.__exit__(None, None, None)
            assert_frozen(heap, "inside the outer snapshot, after an inner one exited twice")
            stray = heap.snapshot()
            stray.__exit__(None, None, None)
            assert_frozen(heap, "inside the outer snapshot, after a never-entered one exited")
            with heap.snapshot():
                pass
            assert_frozen(heap, "inside the outer snapshot, after a nested with-block")
            try:
                second.free()
            except RuntimeError:
                pass
            else:
                raise AssertionError("Block.free succeeded on a frozen heap")
        second.free()
        heap.malloc(8).free()
        assert heap.live_blocks == 0, heap.live_blocks
        heap.destroy()
    """)


# ----------------------------------------------------------------------------------------------------------
# item 19: __init__ on a live heap
# ----------------------------------------------------------------------------------------------------------


def test_reinitialising_a_live_heap_raises_and_keeps_it_working() -> None:
    run_child("""
        import pymimalloc

        heap = pymimalloc.Heap()
        block = heap.malloc(64)
        block.view[:] = b"a" * 64
        try:
            heap.__init__()
        except (TypeError, RuntimeError):
            pass
        else:
            raise AssertionError("heap.__init__() on a live heap did not raise")
        assert not heap.closed
        assert block in heap and pymimalloc.heap_of(block) is heap
        assert bytes(block.view) == b"a" * 64
        more = heap.malloc(32)
        assert more in heap and heap.live_blocks == 2, heap.live_blocks
        assert len(list(heap.blocks())) == 2
        block.free()
        more.free()
        heap.destroy()
        assert heap.closed

        main = pymimalloc.main_heap()
        try:
            main.__init__()
        except (TypeError, RuntimeError):
            pass
        else:
            raise AssertionError("main_heap().__init__() did not raise")
        assert pymimalloc.main_heap() is main and main.is_main
        try:
            main.close()
        except ValueError:
            pass
        else:
            raise AssertionError("main_heap().close() did not raise ValueError after __init__()")
        block = pymimalloc.malloc(8)
        assert block.heap is main and block in main
        block.free()
    """)


# ----------------------------------------------------------------------------------------------------------
# item 20: the main heap's statistics
# ----------------------------------------------------------------------------------------------------------


def test_main_heap_stats_returns_a_dict() -> None:
    stats = pymimalloc.main_heap().mimalloc_stats()
    assert isinstance(stats, dict)
    assert pymimalloc.main_heap().stats().pages >= 0


# ----------------------------------------------------------------------------------------------------------
# item 21: a huge arena
# ----------------------------------------------------------------------------------------------------------


def test_huge_arena_is_refused_or_big_enough() -> None:
    # above mimalloc's largest arena: refused before anything is reserved; below: at least the size asked
    run_child(
        """
        import pymimalloc

        size = 4 << 40
        try:
            pymimalloc.Arena(size)
        except ValueError as error:
            assert "at most" in str(error), error
        else:
            raise AssertionError("an arena over MI_ARENA_MAX_SIZE was accepted")
        for size in (pymimalloc.Arena.min_size() + 1, pymimalloc.Arena.max_size() - 1, 100 << 20):
            try:
                arena = pymimalloc.Arena(size)
            except MemoryError:
                continue
            assert arena.size >= size, (arena.size, size)
        """,
        stderr_ok=_only_mimalloc_reports,
        check_mimalloc_errors=False,  # a refused reservation is an out-of-memory report
    )


# ----------------------------------------------------------------------------------------------------------
# item 22: tracemalloc counts each allocation once
# ----------------------------------------------------------------------------------------------------------


def _traced_in_pymimalloc_domain() -> int:
    snapshot = tracemalloc.take_snapshot()
    mine = snapshot.filter_traces([tracemalloc.DomainFilter(True, pymimalloc.TRACEMALLOC_DOMAIN)])
    return sum(trace.size for trace in mine.traces)


def test_tracemalloc_counts_heap_array_data_once(heap: pymimalloc.Heap) -> None:
    np = pytest.importorskip("numpy")
    heap.empty(16, dtype=np.uint8)  # numpy's C API and the heap's handler are set up before tracing
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        array = heap.empty(10_000_000, dtype=np.uint8)
        added = tracemalloc.get_traced_memory()[0] - before
        assert 9_500_000 <= added <= 11_000_000, added
        del array
    finally:
        tracemalloc.stop()


def test_tracemalloc_reports_a_block_in_the_pymimalloc_domain(heap: pymimalloc.Heap) -> None:
    gc.collect()
    tracemalloc.start()
    try:
        before = _traced_in_pymimalloc_domain()
        block = heap.malloc(1 << 20)
        added = _traced_in_pymimalloc_domain() - before
        assert 0.95 * (1 << 20) <= added <= 1.1 * (1 << 20), added
        block.free()
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------------------------------------
# item 23: size limits
# ----------------------------------------------------------------------------------------------------------


def test_good_size_stays_within_limits() -> None:
    run_child("""
        import pymimalloc

        LIMIT = 2**63 - 1
        try:
            result = pymimalloc.good_size(LIMIT)
        except MemoryError:
            pass
        else:  # a checked build rounds less; the answer must still be a size malloc accepts
            assert result == LIMIT, f"good_size(2**63 - 1) returned {result}"
        sizes = {0, 1, 7, 8, 9, 1000, 4095, 4096, 4097, 10 << 10, 70000}
        for k in range(4, 41):
            sizes |= {2**k - 1, 2**k, 2**k + 1, 3 * 2**(k - 1)}
        for n in sorted(s for s in sizes if s <= 2**40):
            good = pymimalloc.good_size(n)
            assert n <= good <= LIMIT, (n, good)
    """)


def test_huge_power_of_two_alignment_is_not_called_a_non_power_of_two(heap: pymimalloc.Heap) -> None:
    with pytest.raises(ValueError) as raised:
        heap.malloc_aligned(8, 2**63)
    assert "power of two" not in str(raised.value), str(raised.value)
