#!/usr/bin/env python3
"""Instructions of python_objects() against plain install() on one allocation-heavy workload, in one run.

    python benchmarks/objects_instructions.py [--reps 2] [--modes install,objects] [--cpu-runs 0]

The workload of benchmarks/instructions.py (json, pickle, deepcopy, str churn) runs under callgrind once with
``--reps`` repetitions and once with none, in each mode, and the difference is the workload's ``Ir`` alone:

``install``      ``pymimalloc.install()``: Python's objects in Python's own mimalloc heap
``objects``      the same, with the work inside ``with heap.python_objects():`` of one fresh Heap (every
                 object goes through the glue: brackets, live counters)
``plain``        no install(): CPython's pymalloc
``measure``      no install(); the work inside ``with pymimalloc.measure():``
``tracemalloc``  no install(); the work between tracemalloc.start() and stop() (one frame)
``memray``       no install(); the work inside ``memray.Tracker`` (if memray is installed)

Ratios are to the first mode given. For measure() against tracemalloc: ``--modes plain,measure,tracemalloc``.
``--cpu-runs N`` also times the work (process CPU time, no valgrind) N times per mode, modes interleaved and
their order reversed every other run, and reports each mode's median CPU time and the median of its paired
ratios to the first mode (noisy on a shared machine: read it beside the instructions).

valgrind cannot run AVX-512: on a CPU that has it, build with ``CFLAGS=-mno-avx512f`` first.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import instructions  # noqa: E402  (the shared workload and callgrind parser)

PRELUDE = r'''
import contextlib, os, sys, tempfile
mode = sys.argv[1]
import pymimalloc
if mode in ("install", "objects"):
    pymimalloc.install()
def scope():
    if mode == "objects":
        return pymimalloc.Heap().python_objects()
    if mode == "measure":
        return pymimalloc.measure()
    if mode == "tracemalloc":
        return tracing()
    if mode == "memray":
        import memray
        return memray.Tracker(os.path.join(tempfile.mkdtemp(), "trace.bin"))
    return contextlib.nullcontext()
@contextlib.contextmanager
def tracing():
    import tracemalloc
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
'''


def workload() -> str:
    """instructions.WORKLOAD with its install step replaced and its loop run inside scope()."""
    body = instructions.WORKLOAD
    body = body.replace('if mode == "install":\n    import pymimalloc\n    pymimalloc.install()\n', "")
    body = body.replace("for _ in range(reps):\n    work()", "with scope():\n    for _ in range(reps):\n        work()")
    if "with scope():" not in body:
        sys.exit("instructions.WORKLOAD changed shape: update objects_instructions.workload()")
    return PRELUDE + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--modes", default="install,objects")
    parser.add_argument("--cpu-runs", type=int, default=0, help="also time each mode N times, interleaved")
    args = parser.parse_args()
    env = instructions.valgrind_environment()
    modes = args.modes.split(",")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="pmi-objinstr.") as tmp:
        out = pathlib.Path(tmp)
        script = out / "workload.py"
        script.write_text(workload())
        for mode in modes:
            rows[mode] = instructions.workload_counts(sys.executable, mode, args.reps, script, out, env, script_mode=mode)
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        for run in range(args.cpu_runs):
            for mode in (modes if run % 2 == 0 else modes[::-1]):
                cpu[mode].append(instructions.cpu_seconds(sys.executable, mode, args.reps, script, env, script_mode=mode))
    base = rows[modes[0]]["Ir"]
    timed = " CPU s (median) | ÷ {0} (median of pairs) |".format(modes[0]) if args.cpu_runs else ""
    print(f"workload x{args.reps}; {sys.version.split()[0]}")
    print(f"| mode | Ir | ÷ {modes[0]} | malloc+calloc calls | Ir/pair (malloc+free) |{timed}")
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if args.cpu_runs else ""))
    for mode in modes:
        row = rows[mode]
        pair = (row["malloc_ir"] + row["free_ir"]) / max(row["malloc_calls"], 1)
        line = f"| {mode} | {row['Ir']:,} | {row['Ir'] / base:.3f} | {row['malloc_calls']:,} | {pair:.1f} |"
        if args.cpu_runs:
            ratios = [a / b for a, b in zip(cpu[mode], cpu[modes[0]])]
            line += f" {statistics.median(cpu[mode]):.3f} | {statistics.median(ratios):.3f} |"
        print(line)


if __name__ == "__main__":
    main()
