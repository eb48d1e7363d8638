"""__init__ on a live heap, or on the main heap, raises and leaves it working."""

import pymimalloc

heap = pymimalloc.Heap()
block = heap.malloc(64)
block.view[:] = b"a" * 64
try:
    heap.__init__()
except (TypeError, RuntimeError):
    pass
else:
    raise AssertionError("heap.__init__() on a live heap did not raise")
assert not heap.closed
assert block in heap and pymimalloc.heap_of(block) is heap
assert bytes(block.view) == b"a" * 64
more = heap.malloc(32)
assert more in heap and heap.live_blocks == 2, heap.live_blocks
assert len(list(heap.blocks())) == 2
block.free()
more.free()
heap.destroy()
assert heap.closed

main = pymimalloc.main_heap()
try:
    main.__init__()
except (TypeError, RuntimeError):
    pass
else:
    raise AssertionError("main_heap().__init__() did not raise")
assert pymimalloc.main_heap() is main and main.is_main
try:
    main.close()
except ValueError:
    pass
else:
    raise AssertionError("main_heap().close() did not raise ValueError after __init__()")
block = pymimalloc.malloc(8)
assert block.heap is main and block in main
block.free()
