"""Setting guarded_sample_rate raises ValueError, directly and through override(), and leaves it 0."""

import pymimalloc
from pymimalloc import options

from refused_option import assert_refused

assert_refused("guarded_sample_rate")
try:
    with options.override(guarded_sample_rate=1):
        raise AssertionError("options.override(guarded_sample_rate=1) entered its block")
except ValueError:
    pass
assert options["guarded_sample_rate"] == 0
with pymimalloc.Heap() as heap:
    block = heap.malloc(8 << 20)
    block.view[-1:] = b"!"
    block.free()
