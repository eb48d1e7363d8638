"""Python's heap keeps an emptied page of blocks above 8 KiB for one round of mimalloc's retire collection, where
mimalloc keeps it for four, under install() (csrc/pmi_mimalloc.c, pmi_page_retire). In a new thread whose 1 KiB
blocks have a page, bytes(40000) takes a 512 KiB page alone in its queue; freed, the page is retired (kept). 1 KiB
blocks then fill their page and take a fresh one, which runs one round: the medium page goes back to its arena.
bytes(3950) (4 KiB blocks, a small page) then does the same, and its page stays: mimalloc's 16 rounds hold for small
blocks. Prints what pmi_python_heap_first_page_kept says (1: the first page of the size's queue is empty and kept;
-1: the queue is empty) for the medium size after the free and after the round, then for the small size after its
round"""

import threading

import pymimalloc
from pymimalloc._core import lib

pymimalloc.install()
MEDIUM = 33 + 40000  # bytes(40000): the object's header with its trailing NUL, and the bytes
SMALL = 33 + 3950
seen: list[int] = []


def page_of(block: bytes) -> int:
    return id(block) >> 16  # small pages are 64 KiB slices


def fresh_page(blocks: list[bytes]) -> None:
    """Fill this thread's page of 1 KiB blocks until a block lands in another page: one fresh page, one round (the
    list has room for them all, so it does not grow on the way)."""
    for index in range(1, len(blocks)):
        blocks[index] = bytes(990)
        if page_of(blocks[index]) != page_of(blocks[0]):
            return


def work() -> None:
    warm = [bytes(990) for _ in range(300)]  # the sizes the rounds below use have pages in this thread
    blocks = [warm[-1]] + [b""] * 100
    block = bytes(40000)
    del block
    seen.append(lib.pmi_python_heap_first_page_kept(MEDIUM))
    fresh_page(blocks)
    seen.append(lib.pmi_python_heap_first_page_kept(MEDIUM))
    block = bytes(3950)
    del block
    blocks[1:] = [b""] * 100
    fresh_page(blocks)
    seen.append(lib.pmi_python_heap_first_page_kept(SMALL))
    del warm


thread = threading.Thread(target=work)
thread.start()
thread.join()
print(*seen)
