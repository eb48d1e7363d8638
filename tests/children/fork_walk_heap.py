"""Fork while another thread walks a heap and the main heap (heap.areas(): one C call that freezes the heap, walks
it and thaws it): each forked child can allocate from both and close the heap. A fork that landed between the
walk's freeze and its world lock, or between the unlock and the thaw, gave a child whose copy of the heap stayed
frozen for good (the two-thread finalizer fuzz found it; 3 of 4 children before the fix)."""

import pymimalloc

from forking import fork_while_a_thread_runs

heap = pymimalloc.Heap()
keep = [heap.malloc(64) for _ in range(1000)]


def walk(stop):
    while not stop.is_set():
        heap.areas()
        pymimalloc.main_heap().areas()


def in_child():
    heap.malloc(8).free()
    pymimalloc.malloc(8).free()
    heap.close()
    assert heap.closed


fork_while_a_thread_runs(walk, in_child)
keep.clear()
heap.close()
