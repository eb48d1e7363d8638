#!/usr/bin/env python3
"""Resident memory after a program frees what it made, pymalloc against install(), in fresh processes.

    python benchmarks/rss_after_free.py [--mib 300] [--idle 2] [--runs 3] [--hand-off]

A child makes about ``--mib`` MiB of small strings, drops them, waits ``--idle`` seconds, allocates a little,
waits again, and (under ``install()``) calls ``pymimalloc.collect(force=True)``; VmRSS is read after each step.
``--hand-off`` lets another thread drop the strings while the maker waits (a queue's consumer). Modes: ``pymalloc``
(nothing), ``install`` (``pymimalloc.install()`` first) and, on CPython 3.13+, ``builtin-mimalloc``
(``PYTHONMALLOC=mimalloc``). Medians of ``--runs``, modes interleaved, in MiB.

pymalloc gives an arena back to the system as soon as it is empty. mimalloc keeps freed pages for reuse and
purges them ``purge_delay`` ms later (1000 by default), but only when some thread next calls into its arenas (a
page that fills or empties, a fresh page, a collect): a process that goes quiet keeps them resident.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = r'''
import sys, threading, time
mode, mib, idle, hand_off = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
if mode == "install":
    import pymimalloc
    pymimalloc.install()
def rss():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:")) / 1024
data = [str(i) * 5 for i in range(mib * 10_000)]  # about 100 bytes each
row = [rss()]
if hand_off:
    worker = threading.Thread(target=data.clear)
    worker.start()
    worker.join()
del data
row.append(rss())
time.sleep(idle)
row.append(rss())
little = [str(i) for i in range(1000)]
time.sleep(idle)
row.append(rss())
if mode == "install":
    pymimalloc.collect(force=True)
row.append(rss())
print(*row)
'''

STEPS = ("made", "freed", "idle", "a little more, idle", "collect(force=True)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=300, help="about how much to make, MiB")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds to wait after freeing")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hand-off", action="store_true", help="another thread drops the strings")
    args = parser.parse_args()
    modes = ["pymalloc", "install"] + (["builtin-mimalloc"] if sys.version_info >= (3, 13) else [])
    samples: dict[str, list[list[float]]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode in modes if run % 2 == 0 else modes[::-1]:
            environment = dict(os.environ)
            environment.pop("PYMIMALLOC_INSTALL", None)
            if mode == "builtin-mimalloc":
                environment["PYTHONMALLOC"] = "mimalloc"
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.mib), str(args.idle),
                                  "1" if args.hand_off else "0"], env=environment, stdout=subprocess.PIPE,
                                 text=True, check=True).stdout
            samples[mode].append([float(value) for value in out.split()])
    print(f"VmRSS, MiB, Python {sys.version.split()[0]}, {args.mib} MiB of strings"
          f"{', dropped by another thread' if args.hand_off else ''}, {args.idle:g} s idle, median of {args.runs}")
    print("| mode | " + " | ".join(STEPS) + " |")
    print("|---|" + "---:|" * len(STEPS))
    for mode in modes:
        cells = [statistics.median(sample[i] for sample in samples[mode]) for i in range(len(STEPS))]
        shown = [f"{value:.0f}" for value in cells]
        if mode != "install":
            shown[-1] = "–"
        print(f"| {mode} | " + " | ".join(shown) + " |")


if __name__ == "__main__":
    main()
