#!/usr/bin/env python3
"""Instructions an allocator costs on one fixed allocation-heavy workload, side by side in one run.

    python benchmarks/instructions.py [--reps 3] [--py313 PATH] [--cpu-runs 0]

The workload (json loads and dumps, pickle loads, copy.deepcopy, str churn; the same data every run, hash
seed 0) runs under valgrind's callgrind, once with ``--reps`` repetitions and once with none, in each mode:

``pymalloc``        this interpreter, CPython's default allocator
``install``         this interpreter after ``import pymimalloc; pymimalloc.install()`` (domains mem and obj)
``startup``         this interpreter with ``PYMIMALLOC_INSTALL=1``: the same hook, installed at start without
                    importing the package (every collection of the workload then also walks the ~4,500
                    objects ``import pymimalloc`` makes in the ``install`` mode: its cost, not the allocator's)
``3.13-pymalloc``   ``--py313`` (default: pyenv's 3.13.0, if present), default allocator
``3.13-mimalloc``   the same with ``PYTHONMALLOC=mimalloc``: CPython's built-in mimalloc (v2)

The difference between the two runs of a mode is the workload alone (start-up, imports and install() cancel).
Each run collects garbage before the loop, so every mode's loop starts from the same state of the collector: without
it, ``import pymimalloc`` left generation 2's count one higher than the other modes had, and the ``install`` loop
alone ran a full collection (+0.5% of its instructions, 2026-12-05: 1.0088 of pymalloc's without the collect,
1.0012 with it).
Callgrind counts the same ``Ir`` as cachegrind (every instruction executed, exact, immune to the noise of a
busy machine) and also the cost of each call, so the script reports:

- ``Ir``: all instructions of the workload, and the ratio to the same interpreter's pymalloc;
- ``Ir/pair``: instructions inside the allocator's malloc, calloc and free, counted from the outermost
  allocator call (``PyObject_Malloc`` and friends, or whatever the interpreter calls directly; callees
  included), divided by the number of malloc and calloc calls: what a malloc+free pair costs on average;
- ``Ir/realloc``: the same for realloc, per call (it includes the copy when a block moves).

valgrind cannot run AVX-512: on a CPU that has it, build pymimalloc with ``CFLAGS=-mno-avx512f`` first.
``--cpu-runs N`` also times the workload (process CPU time, no valgrind) N times per mode, interleaved,
and reports each mode's median ratio to pymalloc of the same interpreter (noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

# valgrind maps the client's memory low by default, so pymalloc's objects got addresses below 2**30 and every
# id() was a one-digit int: dicts keyed by id() (deepcopy's memo, json's circular-reference check) hashed 5x
# cheaper than natively, where mmap's addresses need two digits, as mimalloc's (above 2 TiB) do under valgrind
# too. From 8 GiB up (the highest start valgrind takes) ids have two digits, as they do natively. Every script
# that counts a pymalloc run against a mimalloc run passes it (pyperf_instructions.py imports it).
VALGRIND_HIGH_ADDRESSES = "--aspace-minaddr=0x200000000"

WORKLOAD = r'''
import copy, json, pickle, sys, time
mode, reps = sys.argv[1], int(sys.argv[2])
if mode == "install":
    import pymimalloc
    pymimalloc.install()
data = {"users": [{"id": i, "name": "user%d" % i, "tags": ["t%d" % j for j in range(i % 7)],
                   "score": i * 0.5, "nested": {"a": [i, i + 1, None, True], "b": "x" * (i % 40)}}
                  for i in range(2000)]}
text = json.dumps(data)
blob = pickle.dumps(data, 5)
def work():
    json.loads(text)
    json.dumps(data)
    pickle.loads(blob)
    copy.deepcopy(data)
    parts = []
    for i in range(20000):
        parts.append(str(i) + "x" * (i % 50))
    "-".join(parts).split("x")
import gc
gc.collect()  # every mode's loop starts from the same state of the collector (the docstring says why)
started = time.process_time()
for _ in range(reps):
    work()
if len(sys.argv) > 3:
    print(time.process_time() - started)
'''

# The allocator's entry points: CPython's public wrappers and what they call through the allocator table.
ALLOC_ANY = re.compile(r"^(_?PyObject_(Mi)?(Malloc|Calloc|Realloc|Free)|_?PyMem_(Raw|Mi|MiRaw)?(Malloc|Calloc|Realloc|Free)"
                       r"|pmi_(raw|mem|obj)_(malloc|calloc|realloc|free))$")


def parse_callgrind(path: pathlib.Path) -> dict[str, int]:
    """Total Ir, and Ir and calls of the outermost allocator calls by kind, from an uncompressed profile."""
    row = dict.fromkeys(["Ir", "malloc_ir", "malloc_calls", "realloc_ir", "realloc_calls", "free_ir", "free_calls"], 0)
    caller = callee = ""
    pending_calls = -1
    with open(path) as f:
        for line in f:
            if pending_calls >= 0:
                if ALLOC_ANY.match(callee) and not ALLOC_ANY.match(caller):
                    kind = ("free" if callee.endswith("Free") or callee.endswith("_free") else
                            "realloc" if callee.lower().endswith("realloc") else "malloc")
                    row[f"{kind}_ir"] += int(line.split()[1])
                    row[f"{kind}_calls"] += pending_calls
                pending_calls = -1
            elif line.startswith("fn="):
                caller = line[3:].strip()
            elif line.startswith("cfn="):
                callee = line[4:].strip()
            elif line.startswith("calls="):
                pending_calls = int(line[6:].split()[0])
            elif line.startswith(("totals:", "summary:")):
                row["Ir"] = int(line.split()[1])
    return row


def measure(python: str, mode: str, reps: int, script: pathlib.Path, out: pathlib.Path, env: dict[str, str],
            script_mode: str | None = None) -> dict[str, int]:
    """One callgrind run of ``script`` with ``reps`` repetitions; ``script_mode`` is the script's first argument
    (by default "install" for the install mode and "plain" for any other)."""
    profile = out / f"callgrind.{mode}.{reps}"
    if script_mode is None:
        script_mode = "install" if mode == "install" else "plain"
    cmd = ["valgrind", "--tool=callgrind", VALGRIND_HIGH_ADDRESSES, "--compress-strings=no", "--compress-pos=no",
           f"--callgrind-out-file={profile}", python, str(script), script_mode, str(reps)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"{mode}: valgrind failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return parse_callgrind(profile)


def workload_counts(python: str, mode: str, reps: int, script: pathlib.Path, out: pathlib.Path, env: dict[str, str],
                    script_mode: str | None = None) -> dict[str, int]:
    """The counts of the workload alone: a run with ``reps`` repetitions less a run with none (start-up,
    imports and install() cancel)."""
    full = measure(python, mode, reps, script, out, env, script_mode)
    empty = measure(python, mode, 0, script, out, env, script_mode)
    print(f"  measured {mode}", file=sys.stderr, flush=True)
    return {key: full[key] - empty[key] for key in full}


def valgrind_environment() -> dict[str, str]:
    """This environment with hash seed 0 and no allocator choice of its own; exits if valgrind is missing."""
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    env = dict(os.environ, PYTHONHASHSEED="0")
    for name in ("PYTHONMALLOC", "PYMIMALLOC_INSTALL"):
        env.pop(name, None)
    return env


def cpu_seconds(python: str, mode: str, reps: int, script: pathlib.Path, env: dict[str, str],
                script_mode: str | None = None) -> float:
    """Process CPU time of the workload's repetitions alone, in one fresh process (no valgrind). ``script_mode``
    is what the script is told (objects_instructions.py's modes); by default "install" or "plain"."""
    told = script_mode or ("install" if mode == "install" else "plain")
    proc = subprocess.run([python, str(script), told, str(reps), "time"],
                          env=env, stdout=subprocess.PIPE, text=True, check=True)
    return float(proc.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the workload (default %(default)s)")
    parser.add_argument("--py313", default=os.path.expanduser("~/.pyenv/versions/3.13.0/bin/python3.13"),
                        help="a CPython 3.13 for the built-in mimalloc ('' to skip)")
    parser.add_argument("--cpu-runs", type=int, default=0, help="also time each mode N times, interleaved")
    args = parser.parse_args()
    base_env = valgrind_environment()
    modes: list[tuple[str, str, dict[str, str]]] = [
        ("pymalloc", sys.executable, base_env), ("install", sys.executable, base_env),
        ("startup", sys.executable, dict(base_env, PYMIMALLOC_INSTALL="1"))]
    if args.py313 and os.path.exists(args.py313):
        modes += [("3.13-pymalloc", args.py313, base_env),
                  ("3.13-mimalloc", args.py313, dict(base_env, PYTHONMALLOC="mimalloc"))]
    with tempfile.TemporaryDirectory(prefix="pmi-instr.") as tmp:
        out = pathlib.Path(tmp)
        script = out / "workload.py"
        script.write_text(WORKLOAD)
        rows = {}
        for mode, python, env in modes:
            rows[mode] = workload_counts(python, mode, args.reps, script, out, env)
        cpu: dict[str, list[float]] = {mode: [] for mode, _, _ in modes}
        for run in range(args.cpu_runs):
            order = modes if run % 2 == 0 else modes[::-1]
            for mode, python, env in order:
                cpu[mode].append(cpu_seconds(python, mode, args.reps, script, env))
    print(f"workload x{args.reps}; {sys.version.split()[0]} is {sys.executable}")
    print("| mode | Ir | ÷ pymalloc | malloc+calloc calls | Ir/pair (malloc+free) | realloc calls | Ir/realloc |"
          + (" CPU s (median) | ÷ pymalloc |" if args.cpu_runs else ""))
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.cpu_runs else ""))
    for mode, _, _ in modes:
        row = rows[mode]
        base_mode = "3.13-pymalloc" if mode.startswith("3.13") else "pymalloc"
        pair = (row["malloc_ir"] + row["free_ir"]) / max(row["malloc_calls"], 1)
        line = (f"| {mode} | {row['Ir']:,} | {row['Ir'] / rows[base_mode]['Ir']:.3f} | {row['malloc_calls']:,} | "
                f"{pair:.1f} | {row['realloc_calls']:,} | {row['realloc_ir'] / max(row['realloc_calls'], 1):.0f} |")
        if args.cpu_runs:
            ratios = [a / b for a, b in zip(cpu[mode], cpu[base_mode])]
            line += f" {statistics.median(cpu[mode]):.3f} | {statistics.median(ratios):.3f} |"
        print(line)

if __name__ == "__main__":
    main()
