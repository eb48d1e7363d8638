"""One thread walks the main heap while three others close heaps with live blocks."""

import sys, time

import pymimalloc

from threads import run_threads

sys.setswitchinterval(1e-5)
main = pymimalloc.main_heap()
errors = []
done = {"walks": 0, "heaps": 0}
deadline = time.monotonic() + 2.0

def walker():
    try:
        while time.monotonic() < deadline:
            list(main.blocks())
            done["walks"] += 1
    except BaseException as exc:
        errors.append(exc)

def churn():
    try:
        while time.monotonic() < deadline:
            h = pymimalloc.Heap()
            keep = [h.malloc(n) for n in (16, 300, 5000)]
            h.close()
            del keep
            done["heaps"] += 1
    except BaseException as exc:
        errors.append(exc)

run_threads(walker, churn, churn, churn)
assert not errors, errors[:3]
assert done["walks"] > 0 and done["heaps"] > 0, done
list(main.blocks())
