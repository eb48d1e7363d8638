"""Contexts that keep numpy's handler of a heap after its numpy_allocator() block ended (numpy's handler is a
ContextVar): the context that entered a block left from another thread (a generator finalised there), and an asyncio
task made inside a block. Once the heap is closed, their new arrays come from the C library, as under numpy's default
handler; before, every one raised MemoryError (found by review). They resize and free like any array. Prints OK."""

import asyncio
import threading

import numpy as np

import pymimalloc

get_handler_name = np._core.multiarray.get_handler_name


def check_the_c_library_serves(heap: pymimalloc.Heap) -> None:
    a = np.ones(1000)
    assert get_handler_name(a) == pymimalloc.HANDLER_NAME and pymimalloc.heap_of(a) is None
    a.resize(100_000, refcheck=False)  # numpy's realloc through the handler
    assert a[:1000].sum() == 1000
    b = np.zeros(3000)
    assert b.sum() == 0
    del a, b


heap = pymimalloc.Heap()


def suspended():  # type: ignore[no-untyped-def]
    with heap.numpy_allocator():
        yield


generator = suspended()
next(generator)
holder = [generator]
del generator
thread = threading.Thread(target=holder.clear)  # the generator is finalised, its block left, in the thread
thread.start()
thread.join()
assert get_handler_name() == pymimalloc.HANDLER_NAME  # this context still has it
kept = np.ones(1000)
assert pymimalloc.heap_of(kept) is heap
heap.close()  # not pinned: the block was left
check_the_c_library_serves(heap)
kept.resize(50_000, refcheck=False)  # an array of the closed heap still resizes and frees in it
del kept


async def main() -> None:
    other = pymimalloc.Heap()
    with other.numpy_allocator():
        task = asyncio.get_running_loop().create_task(asyncio.sleep(0.01))  # noqa: F841 (keeps the loop busy)
        later = asyncio.Event()

        async def allocate_later() -> None:
            await later.wait()
            check_the_c_library_serves(other)

        inherited = asyncio.create_task(allocate_later())  # copies this context: numpy's handler included
    other.close()
    later.set()
    await inherited


asyncio.run(main())
print("OK")
