"""Heaps, blocks and walks still work under install(), with another thread allocating."""


import pymimalloc

import python_memory  # noqa: F401 - its warning filter
from threads import threads_running

pymimalloc.install(raw=True)
with pymimalloc.Heap() as heap:
    blocks = [heap.malloc(n) for n in (16, 4096, 1 << 20)]
    assert len(heap.blocks()) == 3
    assert pymimalloc.heap_of(blocks[0]) is heap
main = pymimalloc.main_heap()
stop = False
def spin():
    while not stop:
        _ = [str(i) for i in range(100)]
with threads_running(spin):
    try:
        for _ in range(20):
            main.areas()                              # Python's own heap is not the main heap
    finally:
        stop = True
for b in blocks: b.free()
