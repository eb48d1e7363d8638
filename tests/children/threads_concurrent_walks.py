"""Four threads walk one heap at once, in all four ways; each walk sees every live block."""

import functools, sys, time

import pymimalloc

from threads import run_threads

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

run_threads(*(functools.partial(walker, k) for k in range(4)))
assert not errors, errors[:3]
assert all(counts), counts
heap.malloc(8).free()  # thawed
assert len(list(heap.blocks())) == LIVE
del keep
heap.destroy()
