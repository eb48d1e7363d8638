"""The garbage collector run inside an allocation of a block's __enter__ or __exit__ (found by review):
- leaving a numpy_allocator() block sets numpy's handler to the innermost block still held; that set allocates,
  and the collector could free that block (a garbage cycle) and its heap's capsule, which numpy then used;
- a finalizer run inside __enter__ could enter the same block again, and pin its heap twice."""

import gc

import numpy as np

import pymimalloc

get_handler_name = np._core.multiarray.get_handler_name

gc.disable()
outer = pymimalloc.Heap().numpy_allocator()  # its Heap is held by this block alone
outer.__enter__()
cycle = [outer]
cycle.append(cycle)
del outer, cycle  # garbage, still held
inner_heap = pymimalloc.Heap()
inner = inner_heap.numpy_allocator()
inner.__enter__()
leave = inner.__exit__
gc.set_threshold(1)
gc.enable()
leave(None, None, None)  # the set allocates: the collector (paused inside since) freed the outer block, heap and capsule
gc.disable()
gc.set_threshold(700)
gc.collect()  # the outer block's cycle goes here now: its dealloc gives numpy the handler from before it
assert get_handler_name() != pymimalloc.HANDLER_NAME, get_handler_name()
array = np.ones(1000)
assert array.sum() == 1000
del array
inner_heap.close()

heap = pymimalloc.Heap()
kept = [heap.as_default() for _ in range(25)]  # 20 or more: the context's new tuple is allocated
for scope in kept:
    scope.__enter__()
target = heap.as_default()
refused = []


class EntersAgain:
    def __del__(self) -> None:
        try:
            target.__enter__()
        except RuntimeError:
            refused.append(True)


finalized = EntersAgain()
finalized.cycle = finalized  # type: ignore[attr-defined]
del finalized
enter = target.__enter__
gc.set_threshold(1)
gc.enable()
enter()
gc.disable()
gc.set_threshold(700)
target.__exit__(None, None, None)
for scope in reversed(kept):
    scope.__exit__(None, None, None)
gc.enable()
gc.collect()
assert refused == [True], refused
heap.close()  # pinned once, let go once
print("OK")
