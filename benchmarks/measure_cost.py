#!/usr/bin/env python3
"""pymimalloc.measure() side by side with tracemalloc and memray on one workload, in one run.

    python benchmarks/measure_cost.py [--rounds 5] [--reps 2]

Each mode runs the workload of benchmarks/instructions.py (json, pickle, deepcopy, str churn) in a fresh
child process, rounds interleaved; the time is the process CPU time of the work alone, median of the rounds,
and the slowdown is that time over plain CPython's, less one. Each mode also reports what it shows at the end
(the work keeps one list of 2000 dicts alive so there is something to find):

``plain``        CPython as it is (pymalloc): the baseline
``measure``      ``with pymimalloc.measure() as m:``: m.kept, m.peak, m.blocks, m.allocations
``tracemalloc``  tracemalloc.start(1) .. stop(): get_traced_memory() (current, peak), traces kept
``memray``       ``with memray.Tracker(path):`` as memray runs by default: it records the C library's
                 malloc calls, so it sees pymalloc's 256 KiB arenas, not objects: peak memory and total
                 allocations from its file (if memray is installed)
``memray-objects``  the same with ``trace_python_allocators=True``: every object allocation recorded
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import instructions  # noqa: E402  (the shared workload)

CHILD = r'''
import json, os, sys, tempfile, time
mode, reps = sys.argv[1], int(sys.argv[2])
WORK
kept_by_work = []
def job():
    for _ in range(reps):
        work()
    kept_by_work.append([dict(row) for row in data["users"]])  # something kept, for each tool to find
shown = {}
if mode == "plain":
    started = time.process_time(); job(); seconds = time.process_time() - started
elif mode == "measure":
    import pymimalloc
    started = time.process_time()
    with pymimalloc.measure() as m:
        job()
    seconds = time.process_time() - started
    shown = {"kept": m.kept, "peak": m.peak, "blocks": m.blocks, "allocations": m.allocations}
elif mode == "tracemalloc":
    import tracemalloc
    started = time.process_time()
    tracemalloc.start(1)
    job()
    current, peak = tracemalloc.get_traced_memory()
    traces = len(tracemalloc.take_snapshot().traces)
    tracemalloc.stop()
    seconds = time.process_time() - started
    shown = {"kept": current, "peak": peak, "blocks": traces}
elif mode.startswith("memray"):
    import memray
    path = os.path.join(tempfile.mkdtemp(), "trace.bin")
    started = time.process_time()
    with memray.Tracker(path, trace_python_allocators=(mode == "memray-objects")):
        job()
    seconds = time.process_time() - started
    meta = memray.FileReader(path).metadata
    shown = {"peak": meta.peak_memory, "allocations": meta.total_allocations}
print(json.dumps({"seconds": seconds, "shown": shown}))
'''


def child_source() -> str:
    body = instructions.WORKLOAD
    start = body.index("data = {")
    end = body.index("started = time.process_time()")
    return CHILD.replace("WORK", "import copy, json, pickle\n" + body[start:end])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    modes = ["plain", "measure", "tracemalloc"]
    modes += ["memray", "memray-objects"] if importlib.util.find_spec("memray") else []
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    shown: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="pmi-measure.") as tmp:
        script = pathlib.Path(tmp) / "child.py"
        script.write_text(child_source())
        for round_ in range(args.rounds):
            for mode in (modes if round_ % 2 == 0 else modes[::-1]):
                out = subprocess.run([sys.executable, str(script), mode, str(args.reps)], check=True,
                                     stdout=subprocess.PIPE, text=True, env={"PYTHONHASHSEED": "0", "PATH": ""}).stdout
                row = json.loads(out.splitlines()[-1])
                seconds[mode].append(row["seconds"])
                shown[mode] = row["shown"]
    base = statistics.median(seconds["plain"])
    print(f"workload x{args.reps}, {args.rounds} rounds; Python {sys.version.split()[0]}")
    print("| mode | CPU s (median) | slowdown | kept | peak | live blocks / traces | allocations |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    slow = {}
    for mode in modes:
        median = statistics.median(seconds[mode])
        slow[mode] = median / base - 1
        s = shown[mode]
        cells = [f"{s[k]:,}" if k in s else "" for k in ("kept", "peak", "blocks", "allocations")]
        print(f"| {mode} | {median:.3f} | {slow[mode]:+.1%} | " + " | ".join(cells) + " |")
    if slow["tracemalloc"] > 0:
        print(f"measure() slowdown / tracemalloc slowdown: {slow['measure'] / slow['tracemalloc']:.3f}")


if __name__ == "__main__":
    main()
