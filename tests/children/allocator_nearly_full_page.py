"""Python's heap takes a fresh page in front of a queue's only page when that page is full but for a few blocks freed
on it (csrc/pmi_mimalloc.c, "a nearly full page alone in its queue"). In a new thread, with no page yet for 1,000-byte
blocks: fill one page, free the last 3 blocks, then allocate and free one block 200 times, all in C
(pmi_python_heap_nearly_full_walk). Prints what it says: 21 where a fresh page came in front at the first round and
stayed (two pages in the queue), 11 where every round refilled the nearly full page from its 3 free blocks (mimalloc's
own way), 20 where the fresh page went back to the arena when emptied and another came elsewhere (one taken again at
the same address would read 21: the multi-threaded walks, not this, are the check on pages given back)."""

import threading

import pymimalloc
from pymimalloc._core import lib

pymimalloc.install()
seen: list[int] = []


def work() -> None:
    seen.append(lib.pmi_python_heap_nearly_full_walk(1000, 3, 200))


thread = threading.Thread(target=work)
thread.start()
thread.join()
print(*seen)
