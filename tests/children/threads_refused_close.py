"""Refused destroy() and close() calls on a heap another thread allocates from leave that thread undisturbed."""

import sys, threading, time

import pymimalloc

from threads import threads_running

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

with threads_running(worker):
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
            for scope, enter in (("as_default", heap.as_default), ("numpy_allocator", heap.numpy_allocator)):
                with enter():
                    try:
                        heap.close()
                    except RuntimeError:
                        refused[scope] += 1
                    else:
                        raise AssertionError(f"close() succeeded inside {scope}()")
    finally:
        stop.set()
assert not failures, (len(failures), failures[:5])
assert done[0] > 0 and all(refused.values()), (done, refused)
assert not heap.closed
assert bytes(pinned.view) == b"p" * 64
pinned.free()
heap.close()
assert heap.closed
