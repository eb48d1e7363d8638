"""heap_of, in and usable_size of addresses that another thread allocates (1 MiB-aligned) and frees."""

import sys, time

import pymimalloc

from threads import run_threads

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

run_threads(producer, prober, prober)
assert not errors, errors[:3]
assert len(published) > 1
heap.close()
