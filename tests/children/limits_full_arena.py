"""A second heap in a full arena is refused with MemoryError or allocates inside the arena."""

import pymimalloc

arena = pymimalloc.Arena(pymimalloc.Arena.min_size())
h1 = pymimalloc.Heap(arena=arena)
blocks = []
for _ in range(arena.size // (1 << 20) + 64):
    try:
        blocks.append(h1.malloc(1 << 20))
    except MemoryError:
        break
else:
    raise AssertionError(f"an arena of {arena.size} bytes never filled up")
assert blocks and all(b in arena for b in blocks)
try:
    h2 = pymimalloc.Heap(arena=arena)
except MemoryError:
    h2 = None  # no room left even for the new heap: refused cleanly
if h2 is not None:
    try:
        block = h2.malloc(64)
    except MemoryError:
        pass
    else:
        assert block in arena
        block.free()
    h2.close()
blocks.clear()
h1.close()
