"""A heap's statistics count every thread that used it (csrc/pmi_mimalloc.c, "statistics from every thread"), and a
reset does not disturb a read (csrc/pmi_heap.c, pmi_stats_stop). A review found, in mimalloc v3.4.3's own reads:
0 pages for a heap whose blocks a live thread allocated, -4 once this thread freed them, huge bytes that never went
down, and MemoryError from reads while another thread reset the statistics (1 in 10). Prints "ok" and the reads made
during the resets."""

from __future__ import annotations

import threading

import pymimalloc
from threads import Worker, outcome

MiB = 1 << 20
heap = pymimalloc.Heap()
worker = Worker()
blocks = outcome(worker.submit(lambda: [heap.malloc(3 * MiB) for _ in range(4)] + [heap.malloc(100) for _ in range(1000)]))
held = heap.stats()
assert held.live_blocks == 1004, held
assert held.pages >= 5, f"4 huge blocks and 1000 small ones of a live thread: {held.pages} pages"
assert held.huge_bytes == 12 * MiB, held
process = pymimalloc.stats()["pages"]["current"]
assert process >= 5, f"the process's statistics miss the live thread's pages: {process}"
for block in blocks:
    block.free()  # here: this thread counts out pages that the other one counted in
freed = heap.stats()
assert freed.live_blocks == 0 and freed.huge_bytes == 0, freed
assert 0 <= freed.pages <= held.pages, f"{freed.pages} pages after every block went, {held.pages} before"
assert freed.peak_pages >= held.pages, f"the peak fell: {freed.peak_pages} after {held.pages}"
worker.stop()
heap.collect(force=True)
assert heap.stats().pages >= 0
heap.close()

stop = threading.Event()
failures: list[BaseException] = []


def resetter() -> None:
    pymimalloc.malloc(64).free()  # mi_stats_reset does nothing in a thread that never allocated from the main heap
    while not stop.is_set():
        pymimalloc.reset_stats()


threads = [threading.Thread(target=resetter) for _ in range(2)]
for thread in threads:
    thread.start()
reads = 0
try:
    for _ in range(3000):
        try:
            pymimalloc.main_heap().stats()
            pymimalloc.stats()
        except MemoryError as error:
            failures.append(error)
        reads += 1
finally:
    stop.set()
    for thread in threads:
        thread.join()
assert not failures, f"{len(failures)} of {reads} reads raised, the first: {failures[0]!r}"
print("ok", reads)
