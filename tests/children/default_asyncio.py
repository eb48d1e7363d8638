"""as_default() is scoped per asyncio task: two interleaved tasks each allocate from their own heap."""

import asyncio

import pymimalloc

from default_probe import probe

heaps = [pymimalloc.Heap(), pymimalloc.Heap()]
seen = []

async def task(i):
    heap = heaps[i]
    with heap.as_default():
        for _ in range(3):
            await asyncio.sleep(0)
            current = pymimalloc.default_heap()
            assert current is heap, (i, current, heap)
            block = pymimalloc.malloc(8)
            assert block.heap is heap, (i, block.heap, heap)
            seen.append(i)
    return i

async def main():
    return await asyncio.gather(task(0), task(1))

assert asyncio.run(main()) == [0, 1]
assert seen == [0, 1] * 3, seen  # the tasks really interleaved
assert pymimalloc.default_heap() is pymimalloc.main_heap()
for heap in heaps:
    heap.close()
    assert heap.closed
assert probe()
block = pymimalloc.malloc(8)
assert block.heap is pymimalloc.main_heap()
block.free()
