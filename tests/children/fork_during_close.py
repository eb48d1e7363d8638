"""os.fork() while two threads close heaps that hold nothing. A close decides (CLOSED raised, the heap's lock let go)
and then releases mimalloc's heap under the world lock, which a fork holds while it copies the process: a fork between
the two left the child a closed, empty heap that nothing there would ever release (a review: 147 of 300 children).
csrc/pmi_heap.c's fork handler now releases such heaps in the child. Each child exits 10 if it sees a closed heap with
nothing alive that is not released. Prints the number of such children and of forks."""

from __future__ import annotations

import os
import sys
import threading
import warnings

import pymimalloc
from pymimalloc._core import handle, lib

warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)  # 3.12+: fork()
recent: list[pymimalloc.Heap] = []
stop = threading.Event()


def closer() -> None:
    while not stop.is_set():
        heap = pymimalloc.Heap()
        for size in (100, 20000, 300000, 3 << 20):
            heap.malloc(size).free()
        recent.append(heap)
        if len(recent) > 50:
            recent.pop(0)
        heap.close()


threads = [threading.Thread(target=closer) for _ in range(2)]
for thread in threads:
    thread.start()
stuck_children = 0
forks = int(sys.argv[1])
try:
    for _ in range(forks):
        pid = os.fork()
        if pid == 0:
            stuck = [heap for heap in list(recent)
                     if heap.closed and heap.live_blocks == 0 and not lib.pmi_heap_released(handle(heap))]
            os._exit(10 if stuck else 0)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 10:
            stuck_children += 1
        elif status != 0:
            raise AssertionError(f"a child ended with status {status}")
finally:
    stop.set()
    for thread in threads:
        thread.join()
print(stuck_children, forks)
