"""numpy inside a pymimalloc heap against numpy's default handler, side by side in one run.

    python benchmarks/bench_numpy.py [--repeat 7] [--quick]

Each figure is the median of --repeat runs; within a run the variants alternate, so machine noise hits
both sides alike. Ratios are pymimalloc / numpy default (below 1.0 means pymimalloc is faster).
Arrays are touched once (one write per 4 KiB page) so that page faults count.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import numpy as np

import pymimalloc

KIB = 1024
SIZES = [1 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB, 4096 * KIB, 16384 * KIB]
PAGE = 4096


def _per_call_ns(fn: Callable[[], object], budget_s: float) -> float:
    calls = 1
    while True:  # grow the loop until it takes long enough to time
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter_ns() - start
        if elapsed > budget_s * 1e9 or calls >= 1 << 20:
            return elapsed / calls
        calls *= 4


Variant = tuple[Callable[[], object], Callable[[], contextlib.AbstractContextManager[object]]]


def side_by_side(variants: dict[str, Variant], repeat: int, budget_s: float) -> dict[str, float]:
    """Median ns per call of each variant; each is timed inside its context, entered outside the loop."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, (fn, context) in variants.items():
            with context():
                samples[name].append(_per_call_ns(fn, budget_s))
    return {name: statistics.median(values) for name, values in samples.items()}


def touched(make: Callable[[int], np.ndarray], nbytes: int) -> Callable[[], object]:
    def run() -> object:
        array = make(nbytes)
        array[::PAGE] = 1  # one write per page
        return array
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and shorter loops")
    args = parser.parse_args()
    budget = 0.02 if args.quick else 0.1
    sizes = SIZES[::3] if args.quick else SIZES
    heap = pymimalloc.Heap()
    plain = contextlib.nullcontext
    rows = []
    for nbytes in sizes:
        for ctor in ("empty", "zeros"):
            make = getattr(np, ctor)
            fn = touched(lambda n, make=make: make(n, dtype=np.uint8), nbytes)
            med = side_by_side({"numpy": (fn, plain), "pymimalloc": (fn, heap.numpy_allocator)}, args.repeat, budget)
            rows.append((f"np.{ctor}(n) in numpy_allocator()", nbytes, med["numpy"], med["pymimalloc"]))
        med = side_by_side({
            "numpy": (touched(lambda n: np.empty(n, dtype=np.uint8), nbytes), plain),
            "pymimalloc": (touched(lambda n: heap.empty(n, dtype=np.uint8), nbytes), plain),
        }, args.repeat, budget)
        rows.append(("heap.empty(n) vs np.empty(n)", nbytes, med["numpy"], med["pymimalloc"]))

    for nbytes in [64 * KIB, 512 * KIB, 4096 * KIB][:: (2 if args.quick else 1)]:
        n = nbytes // 8
        a, b, c = np.random.random(n), np.random.random(n), np.random.random(n)

        def workload() -> object:
            return (a * b + c).sum()

        med = side_by_side({"numpy": (workload, plain), "pymimalloc": (workload, heap.numpy_allocator)},
                           args.repeat, budget)
        rows.append(("(a * b + c).sum() temporaries", nbytes, med["numpy"], med["pymimalloc"]))

    print("| measurement | n | numpy default (ns) | pymimalloc (ns) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, nbytes, base, ours in rows:
        size = f"{nbytes // KIB} KiB" if nbytes < 1024 * KIB else f"{nbytes // (1024 * KIB)} MiB"
        print(f"| {name} | {size} | {base:,.0f} | {ours:,.0f} | {ours / base:.2f} |")
    print(f"\nmedian of {args.repeat}; numpy {np.__version__}; pymimalloc {pymimalloc.__version__} "
          f"(mimalloc {pymimalloc.mimalloc_version}, native={pymimalloc.build_info()['native']})")


if __name__ == "__main__":
    main()
