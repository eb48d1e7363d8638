"""One thread walks a heap while short-lived threads allocate from it, free half and exit."""

import gc, sys, threading, time

import pymimalloc

from threads import run_threads, threads_running

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

deadline = time.monotonic() + 2.0
started = 0
with threads_running(walker):
    try:
        while time.monotonic() < deadline and started < 400:
            run_threads(visitor, visitor, visitor, visitor)
            started += 4
    finally:
        stop.set()
assert not errors, errors[:3]
gc.collect()
assert len(kept) == 50 * started, (len(kept), started)
assert heap.live_blocks == len(kept), (heap.live_blocks, len(kept))
assert len(list(heap.blocks())) == len(kept)
kept.clear()
heap.close()
