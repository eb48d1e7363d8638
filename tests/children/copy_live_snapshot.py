"""Copying or pickling a snapshot while it freezes its heap raises TypeError."""

import copy, pickle
import pymimalloc

heap = pymimalloc.Heap()
keep = heap.malloc(8)
with heap.snapshot() as snap:
    for operation in (copy.copy, copy.deepcopy, pickle.dumps):
        try:
            operation(snap)
        except TypeError:
            pass
        else:
            raise AssertionError(f"{operation.__name__} of a live snapshot did not raise TypeError")
keep.free()
heap.malloc(8).free()
heap.destroy()
