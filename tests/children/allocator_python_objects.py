"""Objects made inside heap.python_objects() come from that heap and are counted; prints ok."""

import gc

import pymimalloc

import python_memory  # noqa: F401 - its warning filter

heap = pymimalloc.Heap()
with heap.python_objects() as entered:
    assert entered is heap
    kept = [str(i) * 3 for i in range(10000)]
    temporary = [bytes(100) for _ in range(1000)]
    del temporary
assert pymimalloc.installed() == (), "python_objects() hooks but does not route everything"
assert all(pymimalloc.heap_of(id(s)) is heap for s in kept)
outside = [str(i) * 3 for i in range(100)]
assert not any(pymimalloc.heap_of(id(s)) is heap for s in outside)
live = heap.live_blocks
assert 10000 < live < 10300, live                   # the strings, the list's array and a little more
addresses = {b.address for b in heap.blocks()}
assert {id(s) for s in kept[:100]} <= addresses
del kept
gc.collect()
assert heap.live_blocks < live - 10000, heap.live_blocks
print("ok")
