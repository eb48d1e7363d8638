"""Entering a block while the garbage collector lets other blocks of the context go: the collector runs inside the
allocation of the context's new tuple, and a held scope in a garbage cycle (entered by hand, or a generator
suspended in its block) is let go there. The tuple kept a NULL item and the next exit, or the allocator's next
look at the context, crashed (found by review). Argument: "as_default" or "python_objects"."""

import gc
import sys

import pymimalloc

kind = sys.argv[1]
heap = pymimalloc.Heap()


def block() -> pymimalloc.HeapScope:
    return heap.as_default() if kind == "as_default" else heap.python_objects()


def suspended():  # a generator suspended inside its block
    with block():
        yield


gc.disable()
kept = []
for _ in range(25):  # 20 or more entries: the new tuple never comes from a free list, so it is allocated
    scope = block()
    scope.__enter__()
    kept.append(scope)
victim = block()
victim.__enter__()
generator = suspended()
next(generator)
cycle = [victim, generator]
cycle.append(cycle)  # garbage: both are let go when the collector finalises it
del victim, generator, cycle, scope
last = block()
enter = last.__enter__
gc.set_threshold(1)
gc.enable()
enter()  # allocates the context's new tuple: the collector runs
gc.disable()
last.__exit__(None, None, None)
for scope in reversed(kept):
    scope.__exit__(None, None, None)
gc.enable()
heap.close()
print("OK")
