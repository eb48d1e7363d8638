"""With disallow_arena_alloc set, blocks of every size stay valid after their heap is closed."""

import pymimalloc

pymimalloc.options["disallow_arena_alloc"] = 1
for size in (300, 5000, 70000, 1 << 20):
    heap = pymimalloc.Heap()
    block = heap.malloc(size)
    block.view[:] = b"x" * size
    heap.close()
    assert heap.closed
    assert bytes(block.view) == b"x" * size, size
    block.free()
pymimalloc.collect(True)
