#!/usr/bin/env python3
"""Instructions (valgrind's cachegrind ``Ir``) of pyperformance benchmarks under allocator modes, side by side.

    python benchmarks/pyperf_instructions.py --python PATH --modes pymalloc,pymimalloc[,builtin-mimalloc]
        --benchmarks json_loads=1000,unpickle=1600,... --out results.json

Each benchmark's ``run_benchmark.py`` (inside the target's installed pyperformance) runs as one pyperf worker
with a fixed number of outer loops, under cachegrind, twice per mode: with ``N`` loops (``name=N``) and with
one. The difference, ``ir_work``, is N-1 steady-state loops alone: start-up, imports, ``install()``, the
benchmark's set-up and its first loop cancel. Counts are exact and immune to a busy machine (a repeat agrees
to within 3e-7 for pymalloc and install(); CPython 3.13's built-in mimalloc moved by 0.16%).

Modes: ``pymalloc`` (nothing set), ``pymimalloc`` (``PYMIMALLOC_INSTALL=1``: the target needs a pymimalloc wheel,
whose .pth installs it at start), ``builtin-mimalloc`` (``PYTHONMALLOC=mimalloc``, 3.13+). A mode may add
variables after ``+``: ``pymimalloc+MIMALLOC_PURGE_DELAY=10+MIMALLOC_ARENA_RESERVE=256MiB``. The environment is
cleared to PATH, HOME and LANG, with hash seed 0. Results are kept in ``--out`` as they come (a rerun skips what
is there) and printed as a table of ratios to the first mode. valgrind cannot run AVX-512: on a CPU that has
it, build the wheel with ``CFLAGS=-mno-avx512f``.

``--states N`` measures every mode in N start-up states and reports, per benchmark, the median of the N ratios
(state by state, each mode against the first mode in the same state) and their range. State 0 is the plain
start; state k > 0 puts a ``sitecustomize.py`` first on ``PYTHONPATH`` that keeps ``97 * k`` small objects of
spread sizes, made after the ``.pth`` files ran (so after ``install()``, when a mode installs at start). Why: a
benchmark's count under mimalloc depends on how full each size class's pages are when its loop starts, and that
comes from whatever the process made before. The same wheel read unpickle on 3.11 at 1.0028 to 1.0405 of
pymalloc's, and json_loads on 3.13 at 0.941 to 0.980, from differences as small as one more environment variable
that pymimalloc reads at start (2026-12-05). One state can show a change of allocator where there is only a change
of state.

``--jobs N`` runs N workers at once (a count does not depend on what else the machine runs).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from instructions import VALGRIND_HIGH_ADDRESSES  # noqa: E402  (why: see there)

MODE_ENVIRONMENT = {"pymalloc": {}, "pymimalloc": {"PYMIMALLOC_INSTALL": "1"},
                    "builtin-mimalloc": {"PYTHONMALLOC": "mimalloc"}}
# benchmarks whose script serves several (its first argument picks one)
SCRIPTS = {"unpickle": ("bm_pickle", ["unpickle"]), "pickle": ("bm_pickle", ["pickle"])}


def benchmark_folder(python: str) -> pathlib.Path:
    out = subprocess.run([python, "-c", "import os, pyperformance; print(os.path.dirname(pyperformance.__file__))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return pathlib.Path(out) / "data-files" / "benchmarks"


STATE_SCRIPT = """\
# pyperf_instructions.py's start-up state {state}: objects made after the .pth files ran, kept for good
_pymimalloc_bench_state = [bytes(8 * (1 + (i * 7 + {state}) % 64)) for i in range(97 * {state})]
"""


def state_folder(state: int, tmp: str) -> str:
    """A folder holding the ``sitecustomize.py`` of start-up ``state`` (> 0), inside ``tmp``."""
    folder = pathlib.Path(tmp) / f"state{state}"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(STATE_SCRIPT.format(state=state))
    return str(folder)


def mode_environment(mode: str) -> tuple[dict[str, str], dict[str, str]]:
    """The environment of a process in ``mode`` (a name of MODE_ENVIRONMENT, then any ``+NAME=VALUE``): PATH, HOME
    and LANG from this one, hash seed 0 and the mode's variables; and the mode's variables alone."""
    base, *added = mode.split("+")
    variables = {**MODE_ENVIRONMENT[base], **dict(item.split("=", 1) for item in added)}
    environment = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    environment.update(PYTHONHASHSEED="0", **variables)
    return environment, variables


def worker(python: str, folder: pathlib.Path, name: str, mode: str, loops: int, tmp: str,
           state: int = 0) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one pyperf worker running ``loops`` outer loops of benchmark ``name`` in
    ``mode`` (a name of MODE_ENVIRONMENT, then any ``+NAME=VALUE``) and start-up ``state`` (see --states),
    writing its result into folder ``tmp``."""
    directory, extra = SCRIPTS.get(name, ("bm_" + name, []))
    environment, variables = mode_environment(mode)
    if state:
        variables["PYTHONPATH"] = os.pathsep.join(filter(None, [state_folder(state, tmp), variables.get("PYTHONPATH")]))
        environment["PYTHONPATH"] = variables["PYTHONPATH"]
    command = [python, str(folder / directory / "run_benchmark.py"), *extra, "--worker",
               "--loops", str(loops), "--values", "1", "--warmups", "0",
               "--inherit-environ=" + ",".join(["PYMIMALLOC_INSTALL", "PYTHONMALLOC", *variables]),
               "-o", str(pathlib.Path(tmp) / "out.json")]
    return command, environment


def instructions(python: str, folder: pathlib.Path, name: str, mode: str, loops: int, state: int = 0) -> int:
    """Ir of one pyperf worker running ``loops`` outer loops of benchmark ``name`` in ``mode`` and ``state``."""
    with tempfile.TemporaryDirectory() as tmp:
        log = pathlib.Path(tmp) / "valgrind.log"
        command, environment = worker(python, folder, name, mode, loops, tmp, state)
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                   VALGRIND_HIGH_ADDRESSES, f"--log-file={log}", *command]
        proc = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=tmp)
        text = log.read_text() if log.exists() else ""
        found = re.search(r"I\s+refs:\s+([\d,]+)", text)
        if proc.returncode != 0 or found is None:
            raise SystemExit(f"{name} {mode} --loops {loops} failed ({proc.returncode}):\n{proc.stderr[-2000:]}{text[-2000:]}")
        return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="the interpreter to measure (with pyperf and pyperformance)")
    parser.add_argument("--modes", default="pymalloc,pymimalloc")
    parser.add_argument("--benchmarks", required=True, help="name=N,...: N outer loops of each (the same in every mode)")
    parser.add_argument("--out", required=True, type=pathlib.Path, help="JSON results, kept as they come")
    parser.add_argument("--states", type=int, default=1, help="start-up states per mode (medians reported)")
    parser.add_argument("--jobs", type=int, default=1, help="workers measured at once (counts do not change with it)")
    args = parser.parse_args()
    folder = benchmark_folder(args.python)
    modes = args.modes.split(",")
    benchmarks = [(item.split("=")[0], int(item.split("=")[1]) if "=" in item else 2) for item in args.benchmarks.split(",")]
    states = range(max(1, args.states))
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    jobs = {f"{name}|{mode}" + (f"|state{state}" if state else ""): (name, mode, loops, state)
            for name, loops in benchmarks for state in states for mode in modes}

    def measure(name: str, mode: str, loops: int, state: int) -> dict[str, int]:
        many = instructions(args.python, folder, name, mode, loops, state)
        one = instructions(args.python, folder, name, mode, 1, state)
        return {"loops": loops, "ir_loops": many, "ir_one": one, "ir_work": many - one}

    # a count does not depend on what else the machine runs, so workers may share its cores (--jobs)
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        pending = {pool.submit(measure, *job): key for key, job in jobs.items() if key not in results}
        for done in concurrent.futures.as_completed(pending):
            results[pending[done]] = done.result()
            args.out.write_text(json.dumps(results, indent=1))

    def work(name: str, mode: str, state: int) -> int:
        return int(results[f"{name}|{mode}" + (f"|state{state}" if state else "")]["ir_work"])

    ranged = len(states) > 1
    print(f"| benchmark | loops | {' | '.join(f'{m} Ir (M)' for m in modes)} | "
          f"{' | '.join(f'{m} ÷ {modes[0]}' + (' (median [range])' if ranged else '') for m in modes[1:])} |")
    print("|---|---:|" + "---:|" * (2 * len(modes) - 1))
    logs: dict[str, float] = {mode: 0.0 for mode in modes[1:]}
    for name, loops in benchmarks:
        counts = {mode: statistics.median(work(name, mode, state) for state in states) for mode in modes}
        cells = []
        for mode in modes[1:]:
            ratios = [work(name, mode, state) / work(name, modes[0], state) for state in states]
            middle = statistics.median(ratios)
            logs[mode] += math.log(middle)
            cells.append(f"{middle:.4f}" + (f" [{min(ratios):.4f}-{max(ratios):.4f}]" if ranged else ""))
        print(f"| {name} | {loops} | {' | '.join(f'{counts[m] / 1e6:,.1f}' for m in modes)} | {' | '.join(cells)} |")
    print(f"| **geometric mean** | | {' | '.join('' for _ in modes)} | "
          f"{' | '.join(f'**{math.exp(logs[m] / len(benchmarks)):.4f}**' for m in modes[1:])} |")


if __name__ == "__main__":
    main()
