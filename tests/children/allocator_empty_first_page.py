"""Python's heap keeps an emptied page that is the first of its queue for the next allocations, under install()
(csrc/pmi_mimalloc.c, "empty pages of Python's heap"). In a new thread, 20 blocks of 3,983 bytes (bytes(3950): 4 KiB
blocks, 16 to a 64 KiB page) fill one page, which leaves the queue, and start a second with four. A free into the full
page brings it back, at the tail; freeing the last five blocks (the second page's four and one of the first's)
empties the first page of the queue. mimalloc v3.4.3
gives that page back to its arena, another page of its size being in the queue, and a program that does this in a
loop takes a fresh page every time (pyperformance's unpickle on 3.13). Prints what
pmi_python_heap_first_page_kept says after each step (1: the first page is empty and kept) and after
collect(force=True) in that thread (which frees it)."""

import threading

import pymimalloc
from pymimalloc._core import lib

pymimalloc.install()
SIZE = 33 + 3950  # bytes(3950): the object's header with its trailing NUL, and the bytes
seen: list[int] = []


def work() -> None:
    blocks = [bytes(3950) for _ in range(20)]
    seen.append(lib.pmi_python_heap_first_page_kept(SIZE))
    del blocks[0]  # a free into the full page
    seen.append(lib.pmi_python_heap_first_page_kept(SIZE))
    del blocks[14:]  # the second page's four, and one of the first's
    seen.append(lib.pmi_python_heap_first_page_kept(SIZE))
    pymimalloc.collect(force=True)
    seen.append(lib.pmi_python_heap_first_page_kept(SIZE))
    del blocks


thread = threading.Thread(target=work)
thread.start()
thread.join()
print(*seen)
