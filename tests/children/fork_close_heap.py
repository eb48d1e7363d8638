"""Fork while another thread allocates and frees: each forked child can close the heap."""

import threading

import pymimalloc

from forking import fork_and_check
from threads import threads_running

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

with threads_running(churn, daemon=True):
    try:
        fork_and_check(in_child)
    finally:
        stop.set()
assert not errors, errors[:3]
heap.close()
