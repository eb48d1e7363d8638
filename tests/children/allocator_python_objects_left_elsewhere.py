"""A python_objects() block left from another thread stops at once and unpins its heap."""


import pymimalloc

import python_memory  # noqa: F401 - its warning filter
from threads import run_threads

heap = pymimalloc.Heap()
block = heap.python_objects()
block.__enter__()
assert pymimalloc._core.python_objects_heap_in_context() is heap
run_threads(lambda: block.__exit__(None, None, None))
assert not block.held
more = [str(i) * 2 for i in range(5000)]             # the entering context no longer targets it
assert not any(pymimalloc.heap_of(id(s)) is heap for s in more)
assert pymimalloc._core.python_objects_heap_in_context() is None
heap.close()                                         # unpinned
