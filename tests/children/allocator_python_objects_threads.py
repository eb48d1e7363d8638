"""Objects of a python_objects() heap freed and made in other threads while walks freeze it, then a fork."""

import os

import pymimalloc

import python_memory  # noqa: F401 - its warning filter
from threads import threads_running

heap = pymimalloc.Heap()
with heap.python_objects():
    shared = [[str(i)] * 4 for i in range(20000)]
stop = False
def freer():
    while shared:
        del shared[-50:]
def allocator():   # this thread's python_objects() block, while walks freeze the heap
    with heap.python_objects():
        mine = []
        while not stop:
            mine.append([str(len(mine))] * 3)
            if len(mine) > 5000: del mine[:]
with threads_running(allocator):
    try:
        with threads_running(freer):
            for _ in range(30):
                with heap.snapshot() as snap:
                    assert snap.live_blocks >= 0
                heap.blocks()
    finally:
        stop = True
pid = os.fork()
if pid == 0:
    with heap.python_objects():
        y = [str(i) for i in range(1000)]
    os._exit(0 if pymimalloc.heap_of(id(y[5])) is heap else 3)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
heap.close()
