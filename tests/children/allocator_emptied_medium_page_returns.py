"""Python's heap keeps an emptied page of blocks above 8 KiB for one round of mimalloc's retire collection, where
mimalloc keeps it for four, under install() (csrc/pmi_mimalloc.c, pmi_page_retire). In a new thread whose 1 KiB
blocks have pages, bytes(40000) takes a 512 KiB page alone in its queue; freed, the page is retired (kept). 1 KiB
blocks then fill pages until one lands in a page never seen: a fresh page, which runs one round, and the medium page
goes back to its arena. bytes(3950) (4 KiB blocks, a small page) then does the same, and its page stays after its
round: mimalloc's 16 rounds hold for small blocks. Prints what pmi_python_heap_first_page_kept says (1: the first page
of the size's queue is empty and kept; -1: the queue is empty) for the medium size after the free and after the
round, then for the small size after its round"""

import threading

import pymimalloc
from pymimalloc._core import lib

pymimalloc.install()
MEDIUM = 33 + 40000  # bytes(40000): the object's header with its trailing NUL, and the bytes
SMALL = 33 + 3950
results: list[int] = []


def page_of(block: bytes) -> int:
    return id(block) >> 16  # small pages are 64 KiB slices


def fresh_page(blocks: list[bytes], seen: set[int]) -> None:
    """Fill this thread's pages of 1 KiB blocks until a block lands in a page not seen before: one fresh page, and
    so one round (the list has room for them all, so it does not grow on the way)."""
    for index in range(len(blocks)):
        blocks[index] = bytes(990)
        if page_of(blocks[index]) not in seen:
            seen.add(page_of(blocks[index]))
            return
    raise AssertionError("no fresh page")


def work() -> None:
    warm = [bytes(990) for _ in range(300)]  # the sizes the rounds below use have pages in this thread
    seen = {page_of(block) for block in warm}
    blocks = [b""] * 200
    block = bytes(40000)
    del block
    medium_kept = [lib.pmi_python_heap_first_page_kept(MEDIUM)]
    fresh_page(blocks, seen)
    medium_kept.append(lib.pmi_python_heap_first_page_kept(MEDIUM))
    block = bytes(3950)
    del block
    fresh_page(blocks, seen)
    results.extend([*medium_kept, lib.pmi_python_heap_first_page_kept(SMALL)])
    del warm


thread = threading.Thread(target=work)
thread.start()
thread.join()
print(*results)
