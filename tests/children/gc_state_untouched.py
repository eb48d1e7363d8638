"""pymimalloc pauses the garbage collector only where no other code can see it (found by review: the pause is the
interpreter's one setting, and Python code ran inside it):
- a thread that installs, uninstalls and enters blocks (of an open and of a closed heap) never makes another
  thread's gc.isenabled() read False, nor undoes that thread's gc.disable();
- a child forked meanwhile starts with the collector as its parent had it;
- a profile hook that calls install() inside install() gets a RuntimeError that says why (it waited for its own
  thread for good);
- a fork inside install() from its own thread (a finalizer run there may fork) forks (the lock's fork handler
  waited for its own thread for good).
Prints OK."""

import gc
import os
import sys
import threading
import warnings

import pymimalloc

warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)  # 3.12+: fork()
sys.setswitchinterval(1e-6)
open_heap = pymimalloc.Heap()
closed_heap = pymimalloc.Heap()
closed_heap.close()
stop = False


def worker() -> None:
    while not stop:
        pymimalloc.uninstall()
        pymimalloc.install()
        with open_heap.as_default():
            pass
        try:
            with closed_heap.as_default():
                pass
        except ValueError:
            pass


thread = threading.Thread(target=worker, daemon=True)
thread.start()
seen_off = sum(not gc.isenabled() for _ in range(20000))
undone = 0
for _ in range(1000):
    gc.disable()
    for _ in range(300):
        pass
    undone += gc.isenabled()
    gc.enable()
children_off = 0
for _ in range(100):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if gc.isenabled() else 1)
    _, status = os.waitpid(pid, 0)
    children_off += os.waitstatus_to_exitcode(status) == 1
stop = True
thread.join()
assert (seen_off, undone, children_off) == (0, 0, 0), (seen_off, undone, children_off)
pymimalloc.uninstall()

refused = []


def installs_again(frame, event, arg):  # type: ignore[no-untyped-def]
    if event == "call" and frame.f_code.co_name == "_hook_locked" and not refused:
        try:
            pymimalloc.install()
        except RuntimeError as error:
            refused.append(str(error))


sys.setprofile(installs_again)
pymimalloc.install()
sys.setprofile(None)
assert refused == ["pymimalloc.install() was called while pymimalloc.install() ran in this thread (from a finalizer, "
                   "a signal handler or a profile hook): call it from elsewhere"], refused
assert pymimalloc.installed() == ("mem", "obj"), pymimalloc.installed()

# a fork while install() holds its lock, from its own thread (as a finalizer run there may fork): the lock's fork
# handler waited for its own thread for good
pymimalloc.uninstall()
forked = []


def forks_inside(frame, event, arg):  # type: ignore[no-untyped-def]
    if event == "call" and frame.f_code.co_name == "_hook_locked" and not forked:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if gc.isenabled() else 1)
        forked.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))


sys.setprofile(forks_inside)
pymimalloc.install()
sys.setprofile(None)
assert forked == [0], forked
assert pymimalloc.installed() == ("mem", "obj"), pymimalloc.installed()
print("OK")
