"""Heaps that hold Python objects one after another, each closed and destroyed before the next is made (so a new
heap may get a destroyed one's address): every heap counts exactly its own objects, frees that outlive a close finish
the heap, and a buffer grown a little at a time inside python_objects() moves only now and then. Prints ok.

The hook remembers, per thread, the heap it last freed an object into (pmi_allocator.c, pmi_owned_free); a memory of
a destroyed heap must never serve a new heap at the same address. And a chosen heap's blocks grow with room, as
Python's own heap's do: without it, every growth moved (and copied) the buffer."""

import ctypes
import gc

import pymimalloc

import python_memory  # noqa: F401 - its warning filter


def data_address(buffer: bytearray) -> int:
    return ctypes.addressof((ctypes.c_char * 1).from_buffer(buffer))


for turn in range(40):
    heap = pymimalloc.Heap()
    before = heap.live_blocks
    with heap.python_objects():
        kept = [str(i) * 3 for i in range(2000)]
        dropped = [str(i) * 3 for i in range(2000)]
        del dropped  # frees in the scope: the thread's cached heap is this one
    assert all(pymimalloc.heap_of(id(s)) is heap for s in kept[:50])
    live = heap.live_blocks
    assert 2000 <= live - before < 2100, (turn, before, live)
    if turn % 2:
        del kept  # freed while the heap is open
        gc.collect()
        assert heap.live_blocks - before < 10, (turn, before, heap.live_blocks)  # what CPython keeps (a cache or two)
    else:
        heap.close()  # objects outlive the close; their frees finish the heap
        del kept
        gc.collect()
        assert heap.live_blocks - before < 10, (turn, before, heap.live_blocks)
    heap.close()

heap = pymimalloc.Heap()
with heap.python_objects():
    buffer = bytearray(8192)
    moves = 0
    address = data_address(buffer)
    for step in range(40):
        buffer += bytes(len(buffer) // 8)  # CPython's own step for lists: an eighth
        buffer[-1] = step
        moved = data_address(buffer)
        moves += moved != address
        address = moved
assert pymimalloc.heap_of(address) is heap
assert buffer[8191] == 0 and buffer[-1] == 39
# 40 growths: 7 moves with half as much again as room (20 without: mimalloc keeps only its size class)
assert moves <= 12, moves
del buffer
heap.close()
print("ok")
