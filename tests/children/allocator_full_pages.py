"""How a new thread's part of Python's heap keeps full pages, under install(): prints what
pmi_python_heap_full_retain says in a thread at the process's defaults, after an options scope that set
page_full_retain and restored it, and inside options.preset("fifo") (-1: no abandoning). Python's heap keeps no full
page in its queues while the option is mimalloc's 2 and not from the environment, and always abandons the others
(csrc/pmi_mimalloc.c). A count of abandoned pages was tried first: mimalloc merges a dead thread's statistics late,
so it read 205, 411, 413 or 619 for the same run."""

import threading

import pymimalloc
from pymimalloc import options
from pymimalloc._core import lib

pymimalloc.install()


def retain_in_a_new_thread() -> int:
    seen: list[int] = []

    def work() -> None:
        keep = [str(i) * 3 for i in range(1000)]  # this thread's first blocks of Python's heap
        seen.append(lib.pmi_python_heap_full_retain())
        del keep

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return seen[0]


first = retain_in_a_new_thread()
with options.override(page_full_retain=1):
    pass
restored = retain_in_a_new_thread()
with options.override(page_full_retain=8):
    chosen = retain_in_a_new_thread()
with options.preset("fifo"):
    fifo = retain_in_a_new_thread()
print(first, restored, chosen, fifo)
