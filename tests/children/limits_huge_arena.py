"""An arena above mimalloc's largest is refused before anything is reserved; below, it is at least the size asked."""

import pymimalloc

size = 4 << 40
try:
    pymimalloc.Arena(size)
except ValueError as error:
    assert "at most" in str(error), error
else:
    raise AssertionError("an arena over MI_ARENA_MAX_SIZE was accepted")
for size in (pymimalloc.Arena.min_size() + 1, pymimalloc.Arena.max_size() - 1, 100 << 20):
    try:
        arena = pymimalloc.Arena(size)
    except MemoryError:
        continue
    assert arena.size >= size, (arena.size, size)
