#!/usr/bin/env python3
"""What ``import pymimalloc; pymimalloc.install()`` costs a program, for one or more checkouts side by side.

    python benchmarks/import_cost.py TREE [TREE ...] [--runs 25]

Each run is a fresh interpreter with ``PYTHONPATH=TREE`` (a checkout built in place), started from ``/`` so that
the current directory adds nothing; the trees alternate run by run (paired, interleaved: a noisy machine). It
prints, per tree, the median CPU time of the two lines, the objects the garbage collector tracks that they
added, the modules loaded in all, and the peak RSS (``VmHWM``) after them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = r"""
import gc, sys, time
before = len(gc.get_objects())
started = time.process_time()
import pymimalloc
pymimalloc.install()
spent = time.process_time() - started
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(spent, len(gc.get_objects()) - before, len(sys.modules), hwm)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--runs", type=int, default=25)
    args = parser.parse_args()
    rows: dict[str, list[list[float]]] = {tree: [] for tree in args.trees}
    for _ in range(args.runs):
        for tree in args.trees:
            out = subprocess.run([sys.executable, "-c", CHILD], env=dict(os.environ, PYTHONPATH=tree), cwd="/",
                                 capture_output=True, text=True, check=True).stdout
            rows[tree].append([float(field) for field in out.split()])
    print("| tree | CPU ms (median) | objects | modules | VmHWM MiB (median) |")
    print("|---|---:|---:|---:|---:|")
    for tree, runs in rows.items():
        print(f"| {tree} | {1000 * statistics.median(r[0] for r in runs):.1f} | {int(runs[0][1]):,} | "
              f"{int(runs[0][2])} | {statistics.median(r[3] for r in runs) / 1024:.1f} |")


if __name__ == "__main__":
    main()
