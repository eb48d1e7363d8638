"""Fork a single-threaded process once: the child reads a block and an array made before the fork, allocates in that
heap and a new one, walks and closes it; the parent's heap is unaffected.

A child program rather than a test body: pytest's process may have threads by then (importing pyarrow in the
README's doctests starts its jemalloc thread), and forking it would warn and could deadlock."""

import pymimalloc

from forking import fork_and_check

heap = pymimalloc.Heap()
block = heap.malloc(1000)
block.view[:] = b"\x07" * 1000
array = heap.zeros(1000)


def in_child():
    assert bytes(block.view) == b"\x07" * 1000 and not array.any()
    more = heap.malloc(5000)
    more.view[:] = b"\x09" * 5000
    assert bytes(more.view) == b"\x09" * 5000 and more in heap
    with pymimalloc.Heap() as fresh:
        small = fresh.malloc(64)
        small.view[:] = b"\x03" * 64
        assert bytes(small.view) == b"\x03" * 64
    assert len(list(heap.blocks())) >= 3
    del more
    block.free()
    heap.close()  # the array made before the fork outlives it, as documented
    assert heap.closed


fork_and_check(in_child, rounds=1, pause=None)
assert bytes(block.view) == b"\x07" * 1000 and not heap.closed and block in heap
block.free()
del array
heap.close()
print("ok")
