"""Fork while another thread prints mimalloc's statistics: each forked child can make a heap and print them too.
Adding up the statistics holds mimalloc's lock of its heaps; printed outside a world bracket, a fork copied that
lock held, and the child's first Heap() waited for it for good (a review found it: 3 of 3 runs, within 7 forks)."""

import io

import sys

import pymimalloc

from forking import fork_while_a_thread_runs

# Back to CPython's switch interval, and no pause between forks: the main thread then takes the GIL back, and forks,
# mostly just as the other thread lets it go to enter its C call, the start of which is the window these forks are for.
sys.setswitchinterval(0.005)

heaps = [pymimalloc.Heap() for _ in range(50)]  # more heaps to add up: the lock is held longer


def print_stats(stop):
    while not stop.is_set():
        pymimalloc.print_stats(file=io.StringIO())


def in_child():
    pymimalloc.Heap().close()
    out = io.StringIO()
    pymimalloc.print_stats(file=out)
    assert out.getvalue()


fork_while_a_thread_runs(print_stats, in_child, rounds=500, pause=None)
for heap in heaps:
    heap.close()
