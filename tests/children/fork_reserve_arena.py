"""Fork while another thread reserves arenas: each forked child can reserve one too. Arena() took its lock before
its world bracket, so a thread could wait for the bracket holding the lock while a fork went on, and the child
found the lock held for good (a review found it: 1 of 3 runs in a release build, after 1,615 forks; checked builds
pause there now and then, which makes such a fork far more likely). The reservations are address space only, and
at most 120 in all, well inside mimalloc's limit."""

import sys

import pymimalloc

from forking import fork_while_a_thread_runs

# Back to CPython's switch interval, and no pause between forks: the main thread then takes the GIL back, and forks,
# mostly just as the other thread lets it go to enter its C call, the start of which is the window these forks are for.
sys.setswitchinterval(0.005)

SIZE = pymimalloc.Arena.min_size()
reserved = []


def reserve(stop):
    while not stop.is_set() and len(reserved) < 120:
        reserved.append(pymimalloc.Arena(SIZE))


def in_child():
    with pymimalloc.Heap(pymimalloc.Arena(SIZE)) as heap:
        heap.malloc(64)


fork_while_a_thread_runs(reserve, in_child, rounds=500, pause=None)
assert reserved
