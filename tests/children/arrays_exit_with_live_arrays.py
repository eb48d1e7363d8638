"""Exit with heap arrays alive: in an open heap, in a closed one, inside numpy_allocator() and a held snapshot."""

import numpy as np

import pymimalloc

heap = pymimalloc.Heap()
keep = [heap.empty(1000), heap.zeros((50, 50))]
closed = pymimalloc.Heap(); kept = closed.ones(100); closed.close()
allocator = heap.numpy_allocator(); allocator.__enter__()
more = np.arange(1000) * 3
snap = pymimalloc.Heap(); snap_arr = snap.empty(10); s = snap.snapshot(); s.__enter__()
print("ok")
