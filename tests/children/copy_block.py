"""copy.copy or copy.deepcopy (argv[1]) of a Block is an independent Block of the same heap, whatever happens to the
original."""

import copy
import sys

import pymimalloc

duplicate = getattr(copy, sys.argv[1])  # copy or deepcopy
heap = pymimalloc.Heap()
original = heap.malloc(100)
original.view[:] = bytes(range(100))
twin = duplicate(original)
assert type(twin) is pymimalloc.Block, type(twin)
assert twin is not original
assert twin.heap is heap and twin in heap and pymimalloc.heap_of(twin) is heap
assert twin.size == 100
twin_address = twin.address
assert twin_address not in (0, original.address), (twin_address, original.address)
assert bytes(twin.view) == bytes(range(100))
assert heap.live_blocks == 2, heap.live_blocks

twin.view[0] = 255                      # independent contents, both ways
assert original.view[0] == 0
original.view[1] = 254
assert twin.view[1] == 1
twin.view[0] = 0
original.view[1] = 1

moved = heap.realloc(original, 4096)    # the original's memory is freed...
assert original.freed
reuse = [heap.malloc(100) for _ in range(16)]   # ...and handed out again
for block in reuse:
    block.view[:] = b"\xee" * 100
del block
assert not twin.freed
assert twin.address == twin_address and twin.address != 0
assert bytes(twin.view) == bytes(range(100))
assert bytes(moved.view[:100]) == bytes(range(100))
assert heap.live_blocks == 2 + len(reuse), heap.live_blocks

twin.free()
moved.free()
del reuse
assert heap.live_blocks == 0, heap.live_blocks
heap.destroy()                          # strict: nothing may still be alive
