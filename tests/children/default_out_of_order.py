"""Two as_default() blocks left out of order: both heaps close, and every thread can still allocate."""

import pymimalloc

from default_probe import probe
from threads import run_threads

h1, h2 = pymimalloc.Heap(), pymimalloc.Heap()
a = h1.as_default()
a.__enter__()
b = h2.as_default()
b.__enter__()
assert pymimalloc.default_heap() is h2
a.__exit__(None, None, None)
b.__exit__(None, None, None)
h1.close()
h2.close()
assert h1.closed and h2.closed
assert probe()
results = []
run_threads(lambda: results.append(probe()))
assert results == [True], results
