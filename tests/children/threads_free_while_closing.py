"""A thread frees its own blocks while the main thread closes their heap, 200 times."""

import sys, threading

import pymimalloc

from threads import threads_running

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

    with threads_running(worker):
        ready.wait()
        heap.close()
    assert heap.closed
    assert not errors, errors[:3]
