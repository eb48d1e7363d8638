#!/usr/bin/env python3
"""Peak resident memory and CPU time of pyperformance workers under allocator modes, side by side.

    python benchmarks/pyperf_rss.py --python PATH --modes pymalloc,pymimalloc[,builtin-mimalloc]
        --benchmarks json_loads=1000,unpickle=1600,... [--runs 3]

Each benchmark's ``run_benchmark.py`` runs as one pyperf worker with ``N`` outer loops (``name=N``), in each mode
in turn (the order alternates between runs), ``--runs`` times. A worker's peak RSS is the kernel's
``ru_maxrss`` for it (from ``os.wait4``), in MiB; the table shows medians and the difference from the first
mode. Its CPU time (user + system, from the same ``os.wait4``) is reported as the median over runs of its
ratio to the first mode's worker of the same run (paired), start-up included: give enough loops for seconds. Modes (``+NAME=VALUE`` adds a variable), environment and the benchmark scripts are those of
``pyperf_instructions.py``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from pyperf_instructions import benchmark_folder, worker  # noqa: E402


def peak_rss_mib(python: str, folder: pathlib.Path, name: str, mode: str, loops: int) -> tuple[float, float]:
    """Peak RSS, in MiB, and CPU time, in seconds, of one pyperf worker running ``loops`` outer loops of
    benchmark ``name`` in ``mode``."""
    with tempfile.TemporaryDirectory() as tmp:
        command, environment = worker(python, folder, name, mode, loops, tmp)
        proc = subprocess.Popen(command, env=environment, cwd=tmp, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        assert proc.stderr is not None
        error = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{name} {mode} --loops {loops} failed ({proc.returncode}):\n{error[-2000:].decode()}")
        return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # ru_maxrss: KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="the interpreter to measure (with pyperf and pyperformance)")
    parser.add_argument("--modes", default="pymalloc,pymimalloc")
    parser.add_argument("--benchmarks", required=True, help="name=N,...: N outer loops of each (the same in every mode)")
    parser.add_argument("--runs", type=int, default=3, help="workers per benchmark and mode (medians reported)")
    args = parser.parse_args()
    folder = benchmark_folder(args.python)
    modes = args.modes.split(",")
    benchmarks = [(item.split("=")[0], int(item.split("=")[1]) if "=" in item else 2) for item in args.benchmarks.split(",")]
    print(f"| benchmark | loops | {' | '.join(f'{m} MiB' for m in modes)} | "
          f"{' | '.join(f'{m} − {modes[0]}' for m in modes[1:])} | {' | '.join(f'{m} CPU ÷ {modes[0]}' for m in modes[1:])} |")
    print("|---|---:|" + "---:|" * (3 * len(modes) - 2))
    for name, loops in benchmarks:
        samples: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
        for run in range(args.runs):
            for mode in modes if run % 2 == 0 else modes[::-1]:
                samples[mode].append(peak_rss_mib(args.python, folder, name, mode, loops))
        peak = {mode: statistics.median(rss for rss, _ in samples[mode]) for mode in modes}
        cpu = {mode: statistics.median(here[1] / first[1] for here, first in zip(samples[mode], samples[modes[0]]))
               for mode in modes[1:]}
        print(f"| {name} | {loops} | {' | '.join(f'{peak[m]:.2f}' for m in modes)} | "
              f"{' | '.join(f'{peak[m] - peak[modes[0]]:+.2f}' for m in modes[1:])} | "
              f"{' | '.join(f'{cpu[m]:.3f}' for m in modes[1:])} |", flush=True)


if __name__ == "__main__":
    main()
