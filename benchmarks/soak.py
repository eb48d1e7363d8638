"""Soak: many heap lifecycles must not grow the process.

    python benchmarks/soak.py [--cycles 1000000] [--tolerance 0.10]

Each cycle creates a heap, allocates a few blocks (one of them a numpy array), frees them and closes the
heap. RSS is read from /proc every tenth of the run; after the first tenth (warm-up) it must stay within
--tolerance of that reading. Exits 1 if it does not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import pymimalloc


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1_000_000)
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parser.parse_args()
    step = max(1, args.cycles // 10)
    samples: list[tuple[int, int]] = []
    started = time.monotonic()
    for cycle in range(1, args.cycles + 1):
        with pymimalloc.Heap() as heap:
            a = heap.malloc(64)
            b = heap.zalloc(4096)
            c = heap.realloc(heap.malloc(100), 3000)
            if cycle % 16 == 0:
                arr = heap.zeros(512)
                del arr
            a.free()
            b.free()
            c.free()
        if cycle % step == 0:
            samples.append((cycle, rss_bytes()))
            print(f"{cycle:>9} cycles  RSS {samples[-1][1] / 2**20:8.1f} MiB", flush=True)
    elapsed = time.monotonic() - started
    baseline = samples[0][1]
    worst = max(rss for _, rss in samples)
    growth = worst / baseline - 1
    print(f"{args.cycles} cycles in {elapsed:.1f} s ({elapsed / args.cycles * 1e6:.1f} us each); "
          f"RSS after warm-up {baseline / 2**20:.1f} MiB, highest {worst / 2**20:.1f} MiB ({growth:+.1%})")
    return 0 if growth <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
