"""The glue's per-thread counters and its asymmetric bracket handshake (csrc/pmi_heap.h): the protocol that
runs, counts that stay exact across thread exits (a dying thread's slot goes to the next thread, counts and
all) and more threads than slots (the shared stripe), and a forked child that registers membarrier again."""

from __future__ import annotations

import os
import sys
import threading

import pytest

import pymimalloc
from pymimalloc import _core

from childproc import CHILDREN, run_program

SLOTS = 16  # PMI_OWNED in csrc/pmi_heap.c


def _kernel_has_membarrier() -> bool:
    if sys.platform != "linux":
        return False
    major, minor = (int(part) for part in os.uname().release.split(".")[:2])
    return (major, minor) >= (4, 14)  # MEMBARRIER_CMD_PRIVATE_EXPEDITED


def test_the_release_build_runs_the_membarrier_protocol() -> None:
    mode = _core.fence_mode()
    if os.environ.get("PYMIMALLOC_EXPECT_SEQ_CST"):  # children/without_membarrier.py: the kernel refuses it
        assert mode == "seq_cst"
    elif _kernel_has_membarrier():
        assert mode == "membarrier"
    else:
        assert mode == "seq_cst"


def _in_threads(count: int, work: object) -> None:
    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("threads", [3, SLOTS * 3])
def test_counts_survive_thread_exits_and_more_threads_than_slots(threads: int) -> None:
    """Each thread allocates, frees a third itself and hands the rest over; all of them exit (their slots go
    back, with their counts). Threads beyond the slots count in the shared stripe. Counts stay exact."""
    heap = pymimalloc.Heap()
    kept: list[pymimalloc.Block] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)
    per_thread = 60

    def work(n: int) -> None:
        barrier.wait()  # all alive at once: more threads than slots really share
        mine = [heap.malloc(16 + n) for _ in range(per_thread)]
        for block in mine[: per_thread // 3]:
            block.free()
        with lock:
            kept.extend(mine[per_thread // 3:])

    _in_threads(threads, work)
    assert heap.live_blocks == len(kept) == threads * (per_thread - per_thread // 3)
    assert heap.live_bytes == sum(b.usable_size for b in kept) or heap.live_bytes == sum(b.size for b in kept)
    assert _core.heap_total_blocks(heap) == threads * per_thread
    # later threads (reusing the slots) free what the dead ones allocated
    chunks = [kept[i::4] for i in range(4)]
    _in_threads(4, lambda n: [b.free() for b in chunks[n]])
    assert heap.live_blocks == 0 and heap.live_bytes == 0
    heap.close()
    assert heap.closed


def test_a_closed_heap_is_finished_by_the_last_free_in_any_thread() -> None:
    """The free/close handshake: a heap closed with live blocks is destroyed by whichever thread frees last."""
    for _ in range(20):
        heap = pymimalloc.Heap()
        blocks = [heap.malloc(64) for _ in range(400)]
        heap.close()
        chunks = [blocks[i::2] for i in range(2)]
        del blocks
        _in_threads(2, lambda n: [b.free() for b in chunks[n]])
        assert _core.heap_live_blocks(heap) == 0
        assert bool(_core.lib.pmi_heap_released(_core.handle(heap)))


def test_peak_is_exact_in_one_thread() -> None:
    heap = pymimalloc.Heap()
    blocks = [heap.malloc(1000) for _ in range(10)]
    top = heap.live_bytes
    for block in blocks:
        block.free()
    more = heap.malloc(500)
    assert _core.heap_peak_bytes(heap) == top >= 10 * 1000
    more.free()
    heap.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_registers_again_and_brackets_work() -> None:
    """membarrier's registration belongs to a process: the child asks for its own, and closes, freezes and
    frees across its threads still work (a child that ran the light side without a heavy side would not
    hang, but could destroy a heap under an allocation; this checks the mode and exercises the paths)."""
    heap = pymimalloc.Heap()
    parent_mode = _core.fence_mode()
    busy = [heap.malloc(32) for _ in range(100)]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        status = 1
        try:
            assert _core.fence_mode() == parent_mode
            child_heap = pymimalloc.Heap()
            blocks: list[pymimalloc.Block] = []
            lock = threading.Lock()

            def work(n: int) -> None:
                for _ in range(200):
                    block = child_heap.malloc(24)
                    with lock:
                        blocks.append(block)

            _in_threads(SLOTS + 2, work)
            with child_heap.snapshot() as snap:
                assert snap.live_blocks == len(blocks) == (SLOTS + 2) * 200
            child_heap.close()
            _in_threads(2, lambda n: [b.free() for b in blocks[n::2]])
            assert _core.heap_live_blocks(child_heap) == 0
            assert heap.live_blocks == 100
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    del busy
    heap.close()


@pytest.mark.skipif(os.uname().machine != "x86_64" or os.environ.get("PYMIMALLOC_EXPECT_SEQ_CST") is not None,
                    reason="the seccomp filter names x86-64's membarrier; and not again inside the child")
def test_where_the_kernel_refuses_membarrier_the_fallback_protocol_holds() -> None:
    """A sandbox may refuse membarrier(2). pymimalloc then gives no thread a stripe of its own, and every glue call
    writes the shared stripe with locked instructions: these suites run again in a process whose kernel refuses it."""
    suites = ["test_glue_protocol.py", "test_hostile_threads.py", "test_heap.py", "test_allocator.py"]
    run_program("without_membarrier.py", *(str(CHILDREN.parent / name) for name in suites),
                "-q", "-p", "no:cacheprovider", "-x", timeout=600)
