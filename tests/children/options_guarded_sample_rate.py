"""Setting guarded_sample_rate raises ValueError, directly and through override(), and leaves it 0."""

import pymimalloc
from pymimalloc import options

assert options["guarded_sample_rate"] == 0
try:
    options["guarded_sample_rate"] = 1
except ValueError as exc:
    assert "guarded_sample_rate" in str(exc), str(exc)
else:
    raise AssertionError("options['guarded_sample_rate'] = 1 did not raise ValueError")
assert options["guarded_sample_rate"] == 0
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
