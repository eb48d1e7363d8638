#!/usr/bin/env python3
"""Resident memory of a fresh process, pymalloc against install(), with the same modules imported.

    python benchmarks/rss_start.py [--runs 5] [--churn]

Each mode runs in its own process (``--runs`` times, interleaved; medians reported). Both import what
``import pymimalloc`` imports, so the difference is pymimalloc's own: its shared libraries, mimalloc's
arenas and page map. ``--churn`` also makes and frees 100,000 small strings first (mimalloc keeps freed
pages for its purge delay, pymalloc returns empty arenas at once). ``AnonHugePages`` shows whether
transparent huge pages back any of it. ``MIMALLOC_ALLOW_THP=1`` in the environment asks mimalloc for them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CHILD = r'''
import sys
import json, pickle, copy, threading, typing, dataclasses, inspect, tracemalloc  # what pymimalloc imports
mode, churn = sys.argv[1], sys.argv[2] == "1"
if mode != "pymalloc":
    import pymimalloc
    if mode == "install":
        pymimalloc.install()
if churn:
    x = [str(i) * 3 for i in range(100000)]
    del x
status = {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/self/status")
          if line.startswith(("VmRSS", "VmHWM", "RssAnon"))}
huge = sum(int(line.split()[1]) for line in open("/proc/self/smaps") if line.startswith("AnonHugePages"))
print(status["VmRSS"], status["VmHWM"], status["RssAnon"], huge)
'''

MODES = ("pymalloc", "import", "install")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--churn", action="store_true")
    args = parser.parse_args()
    samples: dict[str, list[list[int]]] = {mode: [] for mode in MODES}
    for run in range(args.runs):
        for mode in MODES if run % 2 == 0 else MODES[::-1]:
            out = subprocess.run([sys.executable, "-c", CHILD, mode, "1" if args.churn else "0"],
                                 stdout=subprocess.PIPE, text=True, check=True).stdout
            samples[mode].append([int(v) for v in out.split()])
    print("| mode | VmRSS MiB | VmHWM MiB | RssAnon MiB | AnonHugePages MiB | VmRSS − pymalloc |")
    print("|---|---:|---:|---:|---:|---:|")
    base = statistics.median(s[0] for s in samples["pymalloc"])
    for mode in MODES:
        med = [statistics.median(s[i] for s in samples[mode]) for i in range(4)]
        print(f"| {mode} | {med[0] / 1024:.1f} | {med[1] / 1024:.1f} | {med[2] / 1024:.1f} | {med[3] / 1024:.1f} | "
              f"{(med[0] - base) / 1024:+.1f} |")


if __name__ == "__main__":
    main()
