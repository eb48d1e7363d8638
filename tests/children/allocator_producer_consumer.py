"""One thread makes objects and another frees them, through a queue, under install(): the memory stays bounded.

Every page the maker fills receives its frees from the other thread only. mimalloc v3.4.3 abandons a full page to
its arena, and a free from another thread into an abandoned page brings it back into use. With the abandoning off
(page_full_retain=-1, which Python's heap never takes: csrc/pmi_mimalloc.c), full pages wait in the maker's full
queue for good, and this program's peak grew 225 MiB over its start, where it grows 1 MiB (2026-12-05). Prints that
growth, in MiB. With the argument "fifo" the threads run inside options.preset("fifo"), which sets -1. With "pool"
the main thread makes lists and a pool of four threads frees them: keeping full pages in the maker's own queue, swept
every 1000 slow-path allocations (tried on 2026-12-05 and reverted), peaked 58-83 MiB there, against 31 with the
abandoning, 24 under pymalloc and 21-23 under CPython 3.13's built-in mimalloc, whose delayed free tells the owner."""

import contextlib
import queue
import resource
import sys

import pymimalloc

from threads import run_threads

if sys.argv[1:] != ["startup"]:
    pymimalloc.install()
scope = pymimalloc.options.preset("fifo") if sys.argv[1:] == ["fifo"] else contextlib.nullcontext()
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
q: "queue.Queue[list[str] | None]" = queue.Queue(maxsize=1000)


def make() -> None:
    for i in range(300_000):
        q.put([str(i) * 3 for _ in range(10)])  # 11 small blocks an item, 90 MiB made in all
    q.put(None)


def take() -> None:
    while q.get() is not None:
        pass


def pool() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as workers:
        futures = [workers.submit(list.clear, [str(i) * 5 for i in range(j, j + 20000)])
                   for j in range(0, 6_000_000, 20000)]  # 300 lists of 20,000 strings, 0.4 GB made in all
        for future in futures:
            future.result()


with scope:
    if sys.argv[1:] == ["pool"]:
        pool()
    else:
        run_threads(make, take)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) // 1024)
