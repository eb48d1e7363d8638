"""Does an option preset help one pattern without costing the others? Side by side in one run.

    python benchmarks/presets.py [--preset fifo] [--quick] [--repeat 5]

Two heaps run every kernel in alternation: one made under mimalloc's defaults, one made (and first
allocated from) inside ``options.preset(name)``, since mimalloc reads these options when a thread first
uses a heap. Ratio = preset / default (below 1 means the preset is faster).
"""

from __future__ import annotations

import argparse
import statistics

import pymimalloc
from pymimalloc.bench.kernels import _calibrate, _run_once, plan
from pymimalloc.options import PRESETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fifo", choices=list(PRESETS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    default = pymimalloc.Heap()
    default.malloc(8).free()
    with pymimalloc.options.preset(args.preset):
        tuned = pymimalloc.Heap()
        tuned.malloc(8).free()  # this thread's part of the heap reads the options now
    seconds = 0.02 if args.quick else 0.04
    print(f"| case | default ns | {args.preset} ns | ratio |")
    print("|---|---:|---:|---:|")
    for case in plan(quick=args.quick):
        if case.pattern in ("xthread", "larson"):
            continue  # other threads create their part of the heap outside the preset
        ops = _calibrate(case, "heap", default, seconds)
        samples: dict[str, list[float]] = {"default": [], "tuned": []}
        for round_ in range(args.repeat):
            samples["default"].append(_run_once(case, "heap", default, ops, 1000 + round_))
            samples["tuned"].append(_run_once(case, "heap", tuned, ops, 1000 + round_))
        base, ours = statistics.median(samples["default"]), statistics.median(samples["tuned"])
        print(f"| {case.label} | {base:,.1f} | {ours:,.1f} | {ours / base:.2f} |", flush=True)
    print(f"\npreset {args.preset}: {PRESETS[args.preset]}; median of {args.repeat}")


if __name__ == "__main__":
    main()
