#!/usr/bin/env python3
"""What a pyperformance worker's peak resident memory is made of, under each allocator mode, side by side.

    python benchmarks/rss_worker_parts.py --python PATH [--modes pymalloc,pymimalloc[,builtin-mimalloc]] [--runs 5]
        [--imports pyperf,json,statistics,subprocess,argparse]

A worker's peak is its imports (docs/benchmarks.md), so each run is a fresh ``PATH -c`` that imports what a
pyperf worker imports (``pyperf, json, statistics, subprocess, argparse``) and then reads ``/proc/self/status`` and
``/proc/self/smaps``: the peak (``VmHWM``) against the resident set at that moment (``VmRSS``: equal when the end of
the imports is the peak), its anonymous and file parts, the file pages of pymimalloc's module and cffi's backend, and,
under install(), the anonymous part after a forced collect of this thread's part of Python's heap and of the freed memory
(``pmi_collect(true)``, through the compiled module that the start-up path loaded, without importing the package; not
the whole resident set, which the collect's own code joins as it runs): the most that any rule for keeping or purging
freed pages could take off at that moment. Modes and environment are those
of ``pyperf_instructions.py`` (``pymimalloc`` is ``PYMIMALLOC_INSTALL=1``; the target needs pyperf and a pymimalloc
wheel). Runs alternate between modes; medians in MiB, and the difference from the first mode's.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from pyperf_instructions import mode_environment  # noqa: E402

CHILD = r'''
import importlib, sys
for name in sys.argv[1].split(","):
    importlib.import_module(name)

def status():
    return {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith(("VmHWM", "VmRSS", "RssAnon", "RssFile"))}

def file_pages(*names):
    total, current = 0, None
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
            current = fields[5] if len(fields) > 5 else ""
        elif fields[0] == "Rss:" and any(name in current.rsplit("/", 1)[-1] for name in names):
            total += int(fields[1])
    return total

before = status()
parts = [before["VmHWM"], before["VmRSS"], before["RssAnon"], before["RssFile"],
         file_pages("_mimalloc.", "_cffi_backend.")]
compiled = sys.modules.get("pymimalloc._mimalloc")
if compiled is not None:
    compiled.lib.pmi_collect(True)
    parts.append(status()["RssAnon"])  # not VmRSS: the collect's own code comes into memory as it runs
else:
    parts.append(before["RssAnon"])
print(*parts)
'''
COLUMNS = ("peak", "RSS at the end", "anonymous", "file", "module + cffi files", "anonymous after a forced collect")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="the interpreter to measure (with pyperf, and a pymimalloc wheel)")
    parser.add_argument("--modes", default="pymalloc,pymimalloc")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--imports", default="pyperf,json,statistics,subprocess,argparse",
                        help="the modules each run imports (what a pyperf worker imports)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    samples: dict[str, list[list[int]]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode in modes if run % 2 == 0 else modes[::-1]:
            out = subprocess.run([args.python, "-c", CHILD, args.imports], env=mode_environment(mode)[0], cwd="/", stdout=subprocess.PIPE,
                                 text=True, check=True).stdout
            samples[mode].append([int(value) for value in out.split()])
    median = {mode: [statistics.median(run[i] for run in samples[mode]) / 1024 for i in range(len(COLUMNS))]
              for mode in modes}
    print(f"| MiB (median of {args.runs}) | {' | '.join(modes)} | "
          f"{' | '.join(f'{mode} − {modes[0]}' for mode in modes[1:])} |")
    print("|---|" + "---:|" * (2 * len(modes) - 1))
    for i, column in enumerate(COLUMNS):
        values = [median[mode][i] for mode in modes]
        print(f"| {column} | {' | '.join(f'{v:.2f}' for v in values)} | "
              f"{' | '.join(f'{v - values[0]:+.2f}' for v in values[1:])} |")


if __name__ == "__main__":
    main()
