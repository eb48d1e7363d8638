"""Fork while another thread reallocates: each forked child reads its block, allocates and closes the heap."""

import random
import threading

import pymimalloc

from forking import fork_and_check
from threads import threads_running

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

with threads_running(churn, daemon=True):
    try:
        fork_and_check(in_child)
    finally:
        stop.set()
assert not errors, errors[:3]
assert bytes(mine.view) == b"m" * 100
mine.free()
heap.close()
