"""Every domain's zero-size requests are distinct blocks, every block is 16-byte aligned, calloc zeroes (a small
block too, where mimalloc's fast path reuses a block that held other bytes) and refuses an overflow."""

import ctypes

import pymimalloc

from python_memory import api

pymimalloc.install(raw=True)
for prefix in ("PyMem_", "PyObject_", "PyMem_Raw"):
    malloc, calloc = getattr(api, prefix + "Malloc"), getattr(api, prefix + "Calloc")
    realloc, free = getattr(api, prefix + "Realloc"), getattr(api, prefix + "Free")
    zeros = [malloc(0) for _ in range(8)] + [calloc(0, 0), calloc(0, 8), realloc(None, 0)]
    assert None not in zeros and len(set(zeros)) == len(zeros), (prefix, zeros)
    sized = [malloc(n) for n in range(1, 300)] + [calloc(n, 3) for n in range(1, 100)]
    bad = [p for p in zeros + sized if p % 16]
    assert not bad, (prefix, [hex(p) for p in bad])
    assert all(pymimalloc.usable_size(p) >= 16 for p in zeros + sized), prefix
    zeroed = calloc(1000, 4)
    assert ctypes.string_at(zeroed, 4000) == bytes(4000)
    for size in (1, 16, 24, 100, 512, 1024, 1025):
        for _ in range(3):  # each round reuses what the last one freed, filled with 0xAB first
            dirty = [malloc(size) for _ in range(64)]
            for p in dirty:
                ctypes.memset(p, 0xAB, size)
            for p in dirty:
                free(p)
            clean = [calloc(size, 1) for _ in range(64)]
            assert all(ctypes.string_at(p, size) == bytes(size) for p in clean), (prefix, size)
            for p in clean:
                free(p)
    grown = realloc(sized[0], 100000)
    assert grown and grown % 16 == 0
    assert calloc(1 << 62, 8) is None, "an overflowing calloc must fail, not wrap"
    for p in zeros + sized[1:] + [zeroed, grown]:
        free(p)
    free(None)
