"""Run with MIMALLOC_GUARDED_SAMPLE_RATE=1: large blocks still work."""

import pymimalloc

heap = pymimalloc.Heap()
block = heap.malloc(8 << 20)
block.view[:] = b"g" * (8 << 20)
assert bytes(block.view[-3:]) == b"ggg"
block.free()
blocks = [heap.malloc(n) for n in (16, 1000, 8 << 20)]
del blocks
heap.close()
