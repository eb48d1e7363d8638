"""What a Python user sees: pymimalloc's calls against the defaults they replace, side by side in one run.

    python benchmarks/python_level.py [--quick] [--json PATH]

Each figure is the best of several rounds of a timeit loop (nanoseconds per call), and the rounds of the
two things compared alternate, so both see the same machine. Read the ratios, not the absolute times:
the machines here are noisy. Ratios below 1 mean pymimalloc is faster. Each row states its goal, the ratio (or rate) it is
met at.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

import pymimalloc

KiB, MiB = 1024, 1024 * 1024


class _Timed:
    """A statement and a loop count that takes about ``target_s``, found once."""

    def __init__(self, stmt: Callable[[], object], target_s: float) -> None:
        self.timer = timeit.Timer(stmt)
        number, elapsed = self.timer.autorange()
        self.number = max(1, int(number * target_s / max(elapsed, 1e-9)))

    def best_ns(self, rounds: int = 1) -> float:
        return min(self.timer.timeit(self.number) / self.number * 1e9 for _ in range(rounds))


def compare(ours: Callable[[], object], theirs: Callable[[], object], rounds: int, target_s: float) -> tuple[float, float]:
    """Best ns per call of each, rounds alternating between the two."""
    a, b = _Timed(ours, target_s), _Timed(theirs, target_s)
    best_ours = best_theirs = float("inf")
    for _ in range(rounds):
        best_ours = min(best_ours, a.best_ns())
        best_theirs = min(best_theirs, b.best_ns())
    return best_ours, best_theirs


def size_label(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB" if n >= KiB else f"{n} B"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (about 20 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args()
    # many short rounds, alternating, best of each: the machines here are noisy, and a slow moment then
    # costs one round of one side, not the whole figure
    rounds, target = (7, 0.005) if args.quick else (21, 0.01)

    import pyarrow as pa

    pool = pa.mimalloc_memory_pool()
    rows: list[dict[str, Any]] = []

    def row(measure: str, goal: float, ours: Callable[[], object], theirs: Callable[[], object]) -> None:
        a, b = compare(ours, theirs, rounds, target)
        rows.append({"measure": measure, "ours_ns": round(a, 1), "theirs_ns": round(b, 1),
                     "ratio": round(a / b, 2), "goal": goal, "met": a / b <= goal})
        print(f"| {measure} | {a:.0f} | {b:.0f} | {a / b:.2f} | ≤ {goal} | {'yes' if a / b <= goal else 'no'} |",
              flush=True)

    print(f"pymimalloc {pymimalloc.__version__}, Python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"pyarrow {pa.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{datetime.date.today()}")
    print("| measure | pymimalloc ns | peer ns | ratio | goal | met |")
    print("|---|---:|---:|---:|---:|---|")
    with pymimalloc.Heap() as heap:
        row("`heap.malloc(64)` ÷ `bytearray(64)`", 1.3, lambda: heap.malloc(64), lambda: bytearray(64))
        for n in (64, 4 * KiB, 64 * KiB, MiB):
            row(f"`heap.malloc({size_label(n)})` ÷ `pa.allocate_buffer` (mimalloc pool)", 0.5,
                lambda n=n: heap.malloc(n), lambda n=n: pa.allocate_buffer(n, memory_pool=pool))
        for n in (4 * KiB, 64 * KiB, MiB):
            row(f"`heap.zalloc({size_label(n)})` ÷ `bytearray` (both zeroed)", 1.0,
                lambda n=n: heap.zalloc(n), lambda n=n: bytearray(n))
        u8 = np.uint8
        for n in (64, 4 * KiB, 64 * KiB, MiB):
            row(f"`heap.empty({size_label(n)})` ÷ `np.empty`", 1.2,
                lambda n=n: heap.empty(n, u8), lambda n=n: np.empty(n, u8))
        for n in (64, 4 * KiB, 64 * KiB, 256 * KiB):
            a = b = float("inf")
            timed = _Timed(lambda n=n: np.empty(n, u8), target)
            for _ in range(rounds):  # alternating, as compare() does
                with heap.numpy_allocator():
                    a = min(a, timed.best_ns())
                b = min(b, timed.best_ns())
            rows.append({"measure": f"np.empty({size_label(n)}) in numpy_allocator ÷ default", "ours_ns": round(a, 1),
                         "theirs_ns": round(b, 1), "ratio": round(a / b, 2), "goal": 1.05, "met": a / b <= 1.05})
            print(f"| `np.empty({size_label(n)})` in `numpy_allocator()` ÷ default | {a:.0f} | {b:.0f} | "
                  f"{a / b:.2f} | ≤ 1.05 | {'yes' if a / b <= 1.05 else 'no'} |", flush=True)
        kept = [heap.malloc(48) for _ in range(100_000)]
        walk = _Timed(heap.blocks, target).best_ns(rounds)
        per_second = len(kept) / (walk / 1e9)
        rows.append({"measure": "heap.blocks() throughput, blocks/s", "ours_ns": round(walk, 1),
                     "blocks_per_second": round(per_second), "goal": 5e6, "met": per_second >= 5e6})
        print(f"| `heap.blocks()` of 100 000 blocks | {per_second / 1e6:.1f} M blocks/s | | | ≥ 5 M/s | "
              f"{'yes' if per_second >= 5e6 else 'no'} |")
        for block in kept:
            block.free()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": str(datetime.date.today()), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
