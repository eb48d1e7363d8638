"""A generator inside as_default() is finished elsewhere (argv[1]: closed_in_other_thread or
collected_in_main_thread): refusing is allowed, crashing is not."""

import gc, sys
from concurrent.futures import ThreadPoolExecutor

import pymimalloc

from default_probe import probe

finish = sys.argv[1]
t1, t2 = ThreadPoolExecutor(1), ThreadPoolExecutor(1)   # one thread each, reused for every call
heap = pymimalloc.Heap()

def gen():
    with heap.as_default():
        yield 1
        yield 2

g = gen()
assert t1.submit(next, g).result() == 1
if finish == "closed_in_other_thread":
    try:
        t2.submit(g.close).result()
    except (RuntimeError, ValueError):
        pass  # leaving the block in another thread is misuse: refusing it is allowed, crashing is not
else:
    unraisable = []
    sys.unraisablehook = lambda report: unraisable.append(report.exc_value)
    del g
    gc.collect()
    sys.unraisablehook = sys.__unraisablehook__
    unexpected = [e for e in unraisable if not isinstance(e, (RuntimeError, ValueError))]
    assert not unexpected, unexpected

try:
    heap.close()
except RuntimeError:
    pass  # still pinned as some thread's default: allowed
for executor in (t1, t2):
    assert executor.submit(probe).result()
assert probe()
t1.shutdown()
t2.shutdown()
