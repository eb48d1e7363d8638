"""python_objects() entered while a snapshot freezes its heap: that block's objects go elsewhere."""


import pymimalloc

import python_memory  # noqa: F401 - its warning filter

heap = pymimalloc.Heap()
with heap.snapshot():
    with heap.python_objects():
        during = [str(i) * 3 for i in range(1000)]
    assert not any(pymimalloc.heap_of(id(s)) is heap for s in during)
with heap.python_objects():
    after = [str(i) * 3 for i in range(1000)]
assert all(pymimalloc.heap_of(id(s)) is heap for s in after)
