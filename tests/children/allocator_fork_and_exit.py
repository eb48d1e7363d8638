"""Fork three times with a daemon thread allocating, then exit with it still running and 50 000 objects alive."""

import os
import threading

import pymimalloc

from python_memory import in_mimalloc

pymimalloc.install(raw=True)
kept = [str(i) * 4 for i in range(50000)]
stop = False
def spin():
    while not stop:
        _ = [str(i) for i in range(100)]
threading.Thread(target=spin, daemon=True).start()
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        more = [str(i) * 2 for i in range(20000)]
        del kept[:25000]
        ok = pymimalloc.installed() == ("raw", "mem", "obj") and all(in_mimalloc(s) for s in more[:100])
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
# exit now, with the daemon thread still allocating and 50 000 objects alive
