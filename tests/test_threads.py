from __future__ import annotations

import functools
import random
import threading

import pymimalloc
from threads import run_threads


def test_threads_share_a_heap_and_free_each_others_blocks() -> None:
    heap = pymimalloc.Heap()
    handoff: list[pymimalloc.Block] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(3000):
                block = heap.malloc(rng.choice([8, 64, 1000, 70000]))
                block.view[:1] = bytes([seed])
                with lock:
                    handoff.append(block)
                    victim = handoff.pop(rng.randrange(len(handoff)))
                assert victim.view[0] < 8  # another thread's block, intact
                victim.free()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_threads(*(functools.partial(work, n) for n in range(6)))
    assert errors == []
    assert heap.live_blocks == len(handoff)
    handoff.clear()
    assert heap.live_blocks == 0
    heap.destroy()


def _write_each(blocks: list[pymimalloc.Block]) -> None:
    # a function of its own, so no loop variable outlives the loop and keeps a block alive
    for block in blocks:
        block.view[:4] = b"okay"


def test_closing_while_other_threads_allocate() -> None:
    for _ in range(20):
        heap = pymimalloc.Heap()
        start = threading.Barrier(4)
        outcomes: list[str] = []
        kept: list[pymimalloc.Block] = []

        def allocate() -> None:
            start.wait()
            for _ in range(500):
                try:
                    kept.append(heap.malloc(128))
                except ValueError:
                    outcomes.append("closed")
                    return
            outcomes.append("done")

        def close() -> None:
            start.wait()
            heap.close()

        run_threads(allocate, allocate, allocate, close)
        assert heap.closed and len(outcomes) == 3
        _write_each(kept)  # whatever was allocated before the close is still valid
        assert heap.live_blocks == len(kept)
        kept.clear()
        assert heap.live_blocks == 0


def test_blocks_freed_in_a_thread_after_close() -> None:
    heap = pymimalloc.Heap()
    blocks = [heap.malloc(256) for _ in range(1000)]
    heap.close()
    run_threads(blocks.clear)
    assert heap.live_blocks == 0


def test_concurrent_frees_of_one_block() -> None:
    heap = pymimalloc.Heap()
    for _ in range(200):
        block = heap.malloc(64)
        start = threading.Barrier(4)

        def free() -> None:
            start.wait()
            block.free()

        run_threads(free, free, free, free)
        assert block.freed
    assert heap.live_blocks == 0
    heap.destroy()
