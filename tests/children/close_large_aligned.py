"""Blocks aligned to 128 KiB and more stay valid after their heap is closed."""

import pymimalloc

for alignment in (128 << 10, 256 << 10, 1 << 20, 4 << 20):
    heap = pymimalloc.Heap()
    block = heap.malloc_aligned(100, alignment)
    assert block.address % alignment == 0, (alignment, hex(block.address))
    block.view[:] = b"x" * 100
    heap.close()
    assert heap.closed
    assert block.size == 100 and bytes(block.view) == b"x" * 100, alignment
    block.free()
pymimalloc.collect(True)
