"""Fork while another thread allocates and frees: each forked child can close the heap."""

import pymimalloc

from forking import fork_while_a_thread_runs

heap = pymimalloc.Heap()

def churn(stop):
    while not stop.is_set():
        blocks = [heap.malloc(n) for n in (16, 300, 5000, 70000)]
        for block in blocks:
            block.free()

def in_child():
    heap.close()
    assert heap.closed

fork_while_a_thread_runs(churn, in_child)
heap.close()
