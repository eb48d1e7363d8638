"""How many full pages a new thread's part of Python's heap gives back to the arena (mimalloc counts them as
abandoned), under install(): printed for the process's defaults, then again after an options scope that set
page_full_retain and restored it. Python's heap keeps no full page in its queues (csrc/pmi_mimalloc.c), so it
abandons more of them than mimalloc's default of 2 would; a restore of 2 must not end that."""

import threading

import pymimalloc
from pymimalloc import options

pymimalloc.install()


def fill() -> None:
    keep = [str(i) * 3 for i in range(200_000)]  # fills many small pages
    del keep


def abandoned() -> int:
    before = pymimalloc.stats()["pages_abandoned"]["total"]
    thread = threading.Thread(target=fill)
    thread.start()
    thread.join()
    return int(pymimalloc.stats()["pages_abandoned"]["total"] - before)


first = abandoned()
with options.override(page_full_retain=1):
    pass
print(first, abandoned())
