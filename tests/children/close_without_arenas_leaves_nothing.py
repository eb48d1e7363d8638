"""With disallow_arena_alloc set, closing a heap gives back the OS pages its threads kept for reuse.

mimalloc v3.4.3's mi_heap_destroy frees a heap's arena pages and its abandoned OS pages, but not an OS page still in
the queue of a live thread's theap (an emptied page it keeps: retired). Each heap here had blocks of 100 B to 200 KB
come and go in this thread and in a second thread that outlives it; before csrc/pmi_mimalloc.c's
pmi_heap_free_os_pages every closed heap kept about 9 MiB of address space. Prints the growth of the address space
(VmSize) over 60 heaps, in MiB."""

from __future__ import annotations

import pymimalloc
from threads import Worker, outcome


def vm_size_mib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmSize")) // 1024


def churn(heap: pymimalloc.Heap) -> None:
    blocks = [heap.malloc(size) for size in (100, 2000, 20000, 200000) for _ in range(3)]
    for block in blocks:
        block.free()


pymimalloc.options["disallow_arena_alloc"] = 1
other = Worker()
churn(pymimalloc.Heap())  # the first pages of mimalloc's metadata and the page map in both threads
outcome(other.submit(lambda: churn(pymimalloc.Heap())))
start = vm_size_mib()
for _ in range(60):
    heap = pymimalloc.Heap()
    churn(heap)
    outcome(other.submit(lambda: churn(heap)))
    heap.close()
print(vm_size_mib() - start)
other.stop()
