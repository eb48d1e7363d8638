"""usable_size of an address inside a block (or a slice of a view or array) counts from that address."""

import numpy as np
import pymimalloc

heap = pymimalloc.Heap()
block = heap.malloc(100)
whole = pymimalloc.usable_size(block.address)
assert whole >= 100, whole
assert pymimalloc.usable_size(block) == whole
view = block.view
assert pymimalloc.usable_size(view) == whole
for offset in (1, 7, 50, 99):
    inner = view[offset:]
    assert pymimalloc.usable_size(inner) == whole - offset, (offset, pymimalloc.usable_size(inner), whole)
    inner.release()
view.release()
block.free()

a = heap.zeros(100, dtype=np.uint8)
assert pymimalloc.usable_size(a) >= 100
assert pymimalloc.usable_size(a[10:]) == pymimalloc.usable_size(a) - 10
del a
heap.close()
