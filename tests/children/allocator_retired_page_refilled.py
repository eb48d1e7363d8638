"""A retired page of Python's heap that is refilled, filled up, abandoned and reclaimed does not stay empty behind the
first page of its queue, under install(). The path, found by a review of 8295ac1, in a new thread with 900-byte
blocks (bytes(867); fast-path sized): page A fills and leaves the queue, page B starts; a free into A brings it back
at the tail; B fills, and emptied it is retired as the first page; collect() (not forced) keeps it so; B is refilled
on the fast path alone (which keeps the mark) and one more block makes it leave the queue full; a free into B brings
it back at the tail, and the frees of its other blocks empty it there. With the mark kept, nothing freed it until a
forced collect: pmi_python_heap_retired_out_of_sight said 1. Two rules of csrc/pmi_mimalloc.c close it, each alone:
page.c's abandoning clears the mark (ac69556), and so does the slow path that finds B full, as it clears the mark of
its queue's first page (491c6ec). Prints what the probe says after the last free, then after collect(force=True).
(The random walks of allocator_page_queues_walk.py do not find this path: it needs a page refilled exactly to full.)"""

import threading

import pymimalloc
from pymimalloc._core import lib

pymimalloc.install()
LENGTH = 867
SIZE = 33 + LENGTH
seen: list[int] = []


def page_of(block: bytes) -> int:
    return id(block) >> 16  # small pages are 64 KiB slices


def work() -> None:
    a = [bytes(LENGTH)]
    while True:  # fill page A; the block that lands in another page is B's first
        block = bytes(LENGTH)
        if page_of(block) != page_of(a[0]):
            break
        a.append(block)
    per_page = len(a)
    b = [block]
    del block  # B's blocks are in b alone
    del a[0]  # a free into full A: back at the tail
    b += [bytes(LENGTH) for _ in range(per_page - 1)]  # B full
    del b[:]  # B empties as the first page: retired
    pymimalloc.collect()
    b = [bytes(LENGTH) for _ in range(per_page)]  # refilled on the fast path, full again
    c = bytes(LENGTH)  # B leaves the queue full
    del b[0]  # a free into B: back at the tail
    del b[:]  # B empties behind the first page
    seen.append(lib.pmi_python_heap_retired_out_of_sight())
    pymimalloc.collect(force=True)
    seen.append(lib.pmi_python_heap_retired_out_of_sight())
    del a, c


thread = threading.Thread(target=work)
thread.start()
thread.join()
print(*seen)
