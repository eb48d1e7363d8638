"""1 MiB-aligned blocks in OS pages beside Python objects: the objects stay mimalloc's."""


import pymimalloc

from python_memory import in_mimalloc

pymimalloc.install()
pymimalloc.options["disallow_arena_alloc"] = 1   # every page from the OS, side by side
heap = pymimalloc.Heap()
for _ in range(40):
    before = [str(i) * 5 for i in range(3000)]
    block = heap.malloc_aligned(100, 1 << 20)
    after = [str(i) * 7 for i in range(3000)]
    block.free()
    assert all(in_mimalloc(s) for s in before[::100] + after[::100])
    del before, after
