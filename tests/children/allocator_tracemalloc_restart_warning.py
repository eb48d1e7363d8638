"""The first python_objects() of a process that traces with tracemalloc restarts it above the hook: the warning
names python_objects() (not install()) and points at the caller's line."""

import tracemalloc
import warnings

import pymimalloc

tracemalloc.start()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with pymimalloc.measure() as m:
        kept = [str(n) for n in range(100)]
(warning,) = [w for w in caught if issubclass(w.category, RuntimeWarning)]
assert str(warning.message).startswith("Heap.python_objects() put pymimalloc's allocator hook in place"), warning.message
assert warning.filename == __file__, (warning.filename, __file__)
assert tracemalloc.is_tracing() and m.blocks >= 1
print("ok")
