"""install() while tracemalloc traces restarts it beneath the hook with a RuntimeWarning; prints what it traced."""

import tracemalloc
import warnings

import pymimalloc

from python_memory import in_mimalloc

tracemalloc.start(7)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pymimalloc.install()
assert [w.category for w in caught] == [RuntimeWarning], caught
assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 7
before = tracemalloc.get_traced_memory()[0]
data = [str(i) * 10 for i in range(20000)]
grew = tracemalloc.get_traced_memory()[0] - before
assert grew > 20000 * 40, grew                        # tracemalloc sees mimalloc's new blocks
assert all(in_mimalloc(s) for s in data[:100])
stats = tracemalloc.take_snapshot().statistics("lineno")
assert stats and stats[0].size > 0
tracemalloc.stop()
assert pymimalloc.installed() == ("mem", "obj")      # stopping it leaves the hook beneath
with warnings.catch_warnings():
    warnings.simplefilter("error")
    tracemalloc.start(); pymimalloc.install(); tracemalloc.stop()   # already hooked: no restart
print("traced", grew)
