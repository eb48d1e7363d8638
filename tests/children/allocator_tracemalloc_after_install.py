"""tracemalloc started after install() traces mimalloc's blocks."""

import tracemalloc

import pymimalloc

from python_memory import in_mimalloc

pymimalloc.install()
tracemalloc.start()
data = [str(i) * 10 for i in range(20000)]
assert tracemalloc.get_traced_memory()[0] > 20000 * 40
snapshot = tracemalloc.take_snapshot()
tracemalloc.stop()
del data
assert all(in_mimalloc(s) for s in [str(i) * 10 for i in range(100)])
