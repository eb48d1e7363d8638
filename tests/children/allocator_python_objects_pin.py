"""python_objects() pins its heap; closing it later keeps the objects valid, and nested blocks use the inner heap."""

import gc

import pymimalloc

import python_memory  # noqa: F401 - its warning filter

heap = pymimalloc.Heap()
with heap.python_objects():
    try:
        heap.close()
    except RuntimeError as e:
        assert "in use" in str(e)
    else:
        raise AssertionError("close() inside python_objects() must refuse")
    kept = {i: [str(i)] * 3 for i in range(5000)}
heap.close()                                         # objects live: memory kept until the last goes
assert heap.closed
assert sum(len(v) for v in kept.values()) == 15000 and kept[4999][0] == "4999"
for i in range(0, 5000, 2):
    kept[i].append("grown")                          # realloc of a closed heap's block
del kept
gc.collect()
h2 = pymimalloc.Heap()
with h2.python_objects(), pymimalloc.Heap().python_objects():   # nested, the inner heap wins
    x = [str(i) for i in range(10)]
assert pymimalloc.heap_of(id(x[3])) is not h2
