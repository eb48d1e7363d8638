"""pymimalloc's ContextVars (the lists of as_default(), python_objects() and numpy_allocator() blocks of a context) can
be reached from Python: iterating contextvars.copy_context() lists them. Set to a forged tuple, to something that is
not a tuple, or to another list's entries, each is passed over: the blocks of this context work as without it, and
nothing crashes (a review crashed the process with a forged tuple in each, and with a python_objects() entry in the
numpy list). Prints "ok" and how many values were tried."""

import contextvars

import numpy

import pymimalloc

heap, other = pymimalloc.Heap(), pymimalloc.Heap()
with heap.as_default(), heap.python_objects(), heap.numpy_allocator():  # every list has a value in this context
    pass
names = {"pymimalloc_default_heap", "pymimalloc_python_objects", "pymimalloc_numpy_allocators"}
lists = {var.name: var for var in contextvars.copy_context() if var.name in names}
assert set(lists) == names, sorted(lists)

with other.python_objects():  # a real entry of another list, to move into each (outside its block: not held)
    objects_entry = lists["pymimalloc_python_objects"].get()[-1]
with other.numpy_allocator():
    numpy_list = lists["pymimalloc_numpy_allocators"].get()
held_objects = other.python_objects()
held_objects.__enter__()  # and one still held, whose heap has no numpy handler of its own
held_entry = lists["pymimalloc_python_objects"].get()[-1]
held_objects.__exit__(None, None, None)

forgeries = [(12345678, "not an entry"), "not a tuple", (objects_entry,), numpy_list, (held_entry,),
             (numpy_list[0], held_entry), ()]
tried = 0
for name, var in lists.items():
    for forged in forgeries:
        def use() -> None:
            var.set(forged)
            assert pymimalloc.default_heap().is_main
            with heap.as_default():
                assert pymimalloc.default_heap() is heap
            with heap.python_objects():
                made = [str(i) * 3 for i in range(100)]
                assert all(pymimalloc.heap_of(id(s)) is heap for s in made[10:]), name
            before = numpy.zeros(8)
            with heap.numpy_allocator():
                inside = numpy.zeros(1000)
            assert pymimalloc.heap_of(inside.ctypes.data) is heap and pymimalloc.heap_of(before.ctypes.data) is not heap
            after = numpy.zeros(1000)
            assert pymimalloc.heap_of(after.ctypes.data) is not heap, (name, forged)

        contextvars.copy_context().run(use)
        tried += 1
heap.close()
other.close()
print("ok", tried)
