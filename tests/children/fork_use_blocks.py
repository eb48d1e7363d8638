"""Fork while another thread reallocates: each forked child reads its block, allocates and closes the heap."""

import random

import pymimalloc

from forking import fork_while_a_thread_runs

heap = pymimalloc.Heap()
mine = heap.malloc(100)
mine.view[:] = b"m" * 100

def churn(stop):
    rng = random.Random(14)
    block = heap.malloc(64)
    while not stop.is_set():
        block = heap.realloc(block, rng.randrange(1, 200_000))
    block.free()

def in_child():
    assert bytes(mine.view) == b"m" * 100
    extra = heap.malloc(8)
    extra.view[:] = b"12345678"
    assert bytes(extra.view) == b"12345678"
    extra.free()
    heap.close()
    assert heap.closed

fork_while_a_thread_runs(churn, in_child)
assert bytes(mine.view) == b"m" * 100
mine.free()
heap.close()
