"""Fragmentation: how much memory does each allocator give back after most small objects are freed?

    python benchmarks/fragmentation.py [--python PATH] [--modes pymalloc,pymimalloc,...] [--repeat 3]
                                       [--objects 1000000] [--seed 1] [--json PATH] [--check]

What it measures: the resident set size (VmRSS from /proc/self/status) of a fresh interpreter that builds
--objects small Python objects of mixed sizes and keeps them in one list, then frees 90% of them, chosen at
random (seeded), so that the survivors are scattered over all the memory the allocator took. It reads RSS
at the start (after the allocator is set up and before the first object), after building, and after the
frees followed by ``gc.collect()`` (plus, in the pymimalloc mode, ``pymimalloc.collect(force=True)``;
in the malloc+trim mode, glibc's ``malloc_trim(0)``). An allocator that fragments keeps most of the build's
pages for the 10% that survive.

Note on the default pattern: with 90% freed independently at random, a 4 KiB OS page holding k objects
becomes empty with probability 0.9**k (about 1% for k = 40 objects of ~100 bytes), so no allocator that
does not move objects can give much back; the differences come from how tightly each allocator packed
the objects in the first place. ``--pattern runs`` frees 90% in runs of ``--run`` neighbours (objects
built one after the other), which empties whole pages and shows whether each allocator returns them.

The object mix (each object's kind drawn from a seeded random.Random; sizes are sys.getsizeof on CPython
3.11, 64-bit, GC header included; several objects are two allocations, e.g. a list and its item array):

| share | object                                          | bytes per object (sys.getsizeof)        |
|------:|-------------------------------------------------|-----------------------------------------|
|  25 % | str, ASCII, length 2-200 (a slice)              | 51-249                                  |
|  15 % | tuple of 1-8 Nones (a slice of a constant)      | 48-104                                  |
|  10 % | list of 0-16 Nones                              | 56-184 (56 + a separate 0-128 array)    |
|  10 % | dict of 1-5 shared str keys -> 0                | 184 (with its keys table)               |
|  15 % | float                                           | 24                                      |
|  10 % | int of two 30-bit digits (no small-int cache)   | 32                                      |
|  10 % | bytes of length 2-600 (some past pymalloc's     | 35-633                                  |
|       | 512-byte small-object limit)                    |                                         |
|   5 % | set of 1-6 small (cached) ints                  | 216, or 728 with 5-6 items (own table)  |

Every object in the list is new (no cached singletons); their contents are shared constants. The
survivor check prints how many objects survive and their total sys.getsizeof, which must be identical
in every mode: the workloads match.

Modes, each run in its own child process (``--repeat`` times, interleaved; the table gives medians):

- ``pymalloc``: CPython's default allocator, the baseline;
- ``pymimalloc``: ``pymimalloc.install()`` first thing in the child (reported unavailable if this copy of
  pymimalloc has no install() or cannot be imported);
- ``malloc``: PYTHONMALLOC=malloc (glibc), for reference; ``malloc+trim``: the same plus
  ``ctypes.CDLL(None).malloc_trim(0)`` after the collect;
- ``builtin-mimalloc``: PYTHONMALLOC=mimalloc, CPython 3.13+'s own mimalloc (unavailable before 3.13).

The project's goal: pymimalloc's RSS after free+collect at least 30% below pymalloc's (``--check`` makes
the exit status 1 if it is not met). Exit status 1 also if the modes' survivors differ or a mode that
should be available failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

ALL_MODES = ["pymalloc", "pymimalloc", "malloc", "malloc+trim", "builtin-mimalloc"]
GOAL = 0.30  # pymimalloc retains at least 30% less RSS than pymalloc after free+collect
MIB = 1 << 20

# Runs in the child with -c; argv: mode, objects, seed, pattern, run length. Prints one JSON line.
CHILD = r"""
import sys
mode, n, seed, pattern, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
result = {"mode": mode}
pymimalloc = None
if mode == "pymimalloc":  # first thing: every object of the workload comes from mimalloc
    try:
        import pymimalloc
    except ImportError as exc:
        print(__import__("json").dumps({"mode": mode, "unavailable": f"cannot import pymimalloc: {exc}"}))
        sys.exit(0)
    if not hasattr(pymimalloc, "install"):
        print(__import__("json").dumps({"mode": mode, "unavailable": "this pymimalloc has no install() yet"}))
        sys.exit(0)
    pymimalloc.install()
    result["installed"] = list(pymimalloc.installed()) if hasattr(pymimalloc, "installed") else None

import gc, json, random, time

def allocator_name():
    for module in ("_testinternalcapi", "_testcapi"):
        try:
            return __import__(module).pymem_getallocatorsname()
        except (ImportError, AttributeError):
            continue
        except RuntimeError:
            return "custom"
    return None

def rss_kib(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field + " not found")

result["allocator"] = allocator_name()
rng = random.Random(seed)
text = "".join(chr(32 + (i * 7919) % 95) for i in range(4096))
raw = bytes(range(256)) * 4
keys = ("alpha", "beta", "gamma", "delta", "epsilon")
small = tuple(range(6))
nones = (None,) * 9  # slicing [:k] for k < 9 makes a new tuple; (None,) * 1 would return the constant
kinds = ("str", "tuple", "list", "dict", "float", "int", "bytes", "set")
weights = (25, 15, 10, 10, 15, 10, 10, 5)
choice = rng.choices
randrange = rng.randrange
gc.collect()
result["rss_start"] = rss_kib()

started = time.perf_counter()
objects = [None] * n
for i, kind in enumerate(choice(kinds, weights, k=n)):
    if kind == "str":
        start = randrange(2048)
        obj = text[start:start + randrange(2, 201)]
    elif kind == "tuple":
        obj = nones[:randrange(1, 9)]
    elif kind == "list":
        obj = [None] * randrange(17)
    elif kind == "dict":
        obj = dict.fromkeys(keys[:randrange(1, 6)], 0)
    elif kind == "float":
        obj = i + 0.5
    elif kind == "int":
        obj = (1 << 30) + i * randrange(1, 1 << 30)
    elif kind == "bytes":
        start = randrange(256)
        obj = raw[start:start + randrange(601)]
        if len(obj) < 2:  # b"" and 1-byte bytes are cached singletons
            obj = bytes(2)
    else:
        obj = set(small[:randrange(1, 7)])
    objects[i] = obj
del obj
result["build_s"] = time.perf_counter() - started
result["rss_built"] = rss_kib()

started = time.perf_counter()
keep = bytearray(n)  # exactly n // 10 survivors (runs: n // run // 10 runs of `run` neighbours)
unit = 1 if pattern == "random" else run
units = n // unit
kept = 0
while kept < units // 10:
    j = randrange(units)
    if not keep[j * unit]:
        keep[j * unit:(j + 1) * unit] = b"\x01" * unit
        kept += 1
for j in range(n):
    if not keep[j]:
        objects[j] = None
del keep
gc.collect()
if pymimalloc is not None:
    pymimalloc.collect(force=True)
if mode == "malloc+trim":
    import ctypes
    result["malloc_trim"] = ctypes.CDLL(None).malloc_trim(0)
result["free_s"] = time.perf_counter() - started
result["rss_freed"] = rss_kib()
result["rss_peak"] = rss_kib("VmHWM")

# the survivor check, after the last reading: the same in every mode if the workloads match
survivors = {}
size = 0
for obj in objects:
    if obj is not None:
        name = type(obj).__name__
        survivors[name] = survivors.get(name, 0) + 1
        size += sys.getsizeof(obj)
result["survivors"] = sum(survivors.values())
result["survivors_by_type"] = dict(sorted(survivors.items()))
result["survivors_bytes"] = size
print(json.dumps(result))
"""


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "PYMIMALLOC_INSTALL")}
    env["PYTHONHASHSEED"] = "0"
    return env


def mode_env(mode: str) -> dict[str, str]:
    if mode in ("malloc", "malloc+trim"):
        return {"PYTHONMALLOC": "malloc"}
    if mode == "builtin-mimalloc":
        return {"PYTHONMALLOC": "mimalloc"}
    return {}


def python_version(python: str) -> tuple[int, int]:
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def run_child(python: str, mode: str, objects: int, seed: int, pattern: str, run: int) -> dict[str, Any]:
    done = subprocess.run([python, "-c", CHILD, mode, str(objects), str(seed), pattern, str(run)],
                          check=False, capture_output=True, text=True, env={**clean_env(), **mode_env(mode)},
                          cwd=tempfile.gettempdir())  # not a checkout: -c puts the current directory on sys.path
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        message = (done.stderr or done.stdout).strip().splitlines()
        return {"mode": mode, "failed": f"exit code {done.returncode}: {message[-1] if message else 'no output'}"}
    if done.returncode != 0:
        result["failed"] = f"exit code {done.returncode}"
    return result


def summarize(mode: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "rss_freed" in r and "failed" not in r]
    row: dict[str, Any] = {"mode": mode, "runs": runs}
    if not good:
        reasons = {r.get("unavailable") or r.get("failed") or "?" for r in runs}
        row["status"] = "unavailable" if all("unavailable" in r for r in runs) else "failed"
        row["reason"] = "; ".join(sorted(reasons))
        return row
    row["status"] = "ok" if len(good) == len(runs) else "partly failed"
    for key in ("rss_start", "rss_built", "rss_freed", "rss_peak"):
        row[key + "_mib"] = statistics.median(r[key] for r in good) / 1024
    for key in ("build_s", "free_s"):
        row[key] = statistics.median(r[key] for r in good)
    row["allocator"] = good[0].get("allocator")
    row["installed"] = good[0].get("installed")
    row["survivors"] = sorted({(r["survivors"], r["survivors_bytes"]) for r in good})
    row["survivors_by_type"] = good[0]["survivors_by_type"]
    return row


def markdown(report: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = report["rows"]
    base = next((r for r in rows if r["mode"] == "pymalloc" and r["status"] != "failed" and "rss_freed_mib" in r), None)
    out: list[str] = []
    w = out.append
    how = "at random" if report["pattern"] == "random" else f"in random runs of {report['run']:,} neighbours"
    w(f"# Fragmentation: {report['objects']:,} small objects, 90% freed {how}\n")
    w(f"- Interpreter: `{report['python']}` (Python {report['version']}); seed {report['seed']}; "
      f"median of {report['repeat']} child process(es) per mode")
    w("- RSS = VmRSS of the child; \"kept of build\" = (after free+collect - start) / (after build - start); "
      "\"vs pymalloc\" = RSS after free+collect / pymalloc's\n")
    w("| mode | allocator | RSS start (MiB) | RSS after build (MiB) | RSS after free+collect (MiB) | kept of build "
      "| retained vs pymalloc | peak (MiB) | build / free (s) |")
    w("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        if "rss_freed_mib" not in r:
            reason = r["reason"] if len(r["reason"]) <= 100 else r["reason"][:99] + "…"
            w(f"| {r['mode']} | {r['status']}: {reason} | | | | | | | |")
            continue
        grown = r["rss_built_mib"] - r["rss_start_mib"]
        kept = (r["rss_freed_mib"] - r["rss_start_mib"]) / grown if grown > 0 else float("nan")
        versus = f"{r['rss_freed_mib'] / base['rss_freed_mib']:.2f}" if base else "n/a"
        allocator = r["allocator"] or "?"
        if r.get("installed"):
            allocator += f" ({', '.join(r['installed'])})"
        status = "" if r["status"] == "ok" else f" ({r['status']})"
        w(f"| {r['mode']}{status} | {allocator} | {r['rss_start_mib']:.1f} | {r['rss_built_mib']:.1f} "
          f"| {r['rss_freed_mib']:.1f} | {kept:.0%} | {versus} | {r['rss_peak_mib']:.1f} "
          f"| {r['build_s']:.2f} / {r['free_s']:.2f} |")
    w("")
    check = report["survivor_check"]
    w(f"Survivor check: {check['text']}\n")
    goal = report["goal"]
    w(f"**Goal** (pymimalloc at least {GOAL:.0%} less RSS than pymalloc after free+collect): {goal['text']}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to run (default: this one)")
    parser.add_argument("--modes", default=",".join(ALL_MODES),
                        help="comma-separated, from %(default)s (builtin-mimalloc needs Python 3.13+)")
    parser.add_argument("--repeat", type=int, default=3, help="child processes per mode; the median is shown")
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pattern", choices=["random", "runs"], default="random",
                        help="random: each object survives alone (default); runs: runs of --run neighbours "
                             "survive or go together")
    parser.add_argument("--run", type=int, default=1000, help="run length for --pattern runs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit status 1 if the goal is not met")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in ALL_MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(ALL_MODES)}")
    if args.repeat < 1 or args.objects < 10 or args.run < 1:
        parser.error("--repeat and --run must be at least 1 and --objects at least 10")
    if args.pattern == "runs" and args.objects // args.run < 10:
        parser.error("--pattern runs needs --objects of at least 10 runs")
    version = python_version(args.python)

    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for repeat in range(args.repeat):  # interleaved, so a drift in the machine's load hits every mode alike
        for mode in modes:
            if mode == "builtin-mimalloc" and version < (3, 13):
                if not results[mode]:
                    results[mode].append({"mode": mode, "unavailable": f"needs Python 3.13+ (this is "
                                                                       f"{version[0]}.{version[1]})"})
                continue
            if results[mode] and "unavailable" in results[mode][0]:
                continue
            result = run_child(args.python, mode, args.objects, args.seed, args.pattern, args.run)
            print(f"[{repeat + 1}/{args.repeat}] {mode}: " + (
                result.get("unavailable") or result.get("failed") or
                f"RSS {result['rss_start'] / 1024:.1f} -> {result['rss_built'] / 1024:.1f} -> "
                f"{result['rss_freed'] / 1024:.1f} MiB"), file=sys.stderr, flush=True)
            if mode == "builtin-mimalloc" and "failed" in result and not results[mode]:
                result = {"mode": mode, "unavailable": f"PYTHONMALLOC=mimalloc rejected ({result['failed']})"}
            results[mode].append(result)
    rows = [summarize(mode, runs) for mode, runs in results.items()]

    measured = [r for r in rows if "survivors" in r]
    distinct = {s for r in measured for s in r["survivors"]}
    survivors_ok = len(distinct) <= 1
    if survivors_ok and distinct:
        count, size = next(iter(distinct))
        first = measured[0]["survivors_by_type"]
        text = (f"{count:,} objects survive in every mode and run, {size:,} bytes by sys.getsizeof "
                f"({', '.join(f'{k} {v:,}' for k, v in first.items())}): the workloads match.")
    elif not distinct:
        text = "no mode produced a result."
    else:
        text = "**MISMATCH**: " + "; ".join(f"{r['mode']}: {r['survivors']}" for r in measured)

    base = next((r for r in rows if r["mode"] == "pymalloc" and "rss_freed_mib" in r), None)
    ours = next((r for r in rows if r["mode"] == "pymimalloc" and "rss_freed_mib" in r), None)
    goal: dict[str, Any] = {"target_reduction": GOAL}
    if base and ours:
        ratio = ours["rss_freed_mib"] / base["rss_freed_mib"]
        grown_base = base["rss_freed_mib"] - base["rss_start_mib"]
        ratio_workload = (ours["rss_freed_mib"] - ours["rss_start_mib"]) / grown_base if grown_base > 0 else None
        goal.update(ratio=ratio, reduction=1 - ratio, ratio_above_start=ratio_workload, met=1 - ratio >= GOAL)
        extra = (f"; counting only the growth above each mode's start: {ratio_workload:.2f}"
                 if ratio_workload is not None else "")
        goal["text"] = (f"pymimalloc / pymalloc = {ours['rss_freed_mib']:.1f} / {base['rss_freed_mib']:.1f} MiB "
                        f"= {ratio:.2f}, {abs(1 - ratio):.0%} {'less' if ratio <= 1 else 'more'}{extra}: "
                        f"**{'MET' if goal['met'] else 'NOT MET'}**.")
    else:
        missing = [m for m, r in (("pymalloc", base), ("pymimalloc", ours)) if r is None]
        reason = next((r.get("reason") for r in rows if r["mode"] in missing and r.get("reason")), "not run")
        goal.update(met=None, text=f"cannot tell: no result for {', '.join(missing)} ({reason}).")

    report: dict[str, Any] = {
        "python": args.python, "version": f"{version[0]}.{version[1]}", "objects": args.objects, "seed": args.seed,
        "pattern": args.pattern, "run": args.run,
        "repeat": args.repeat, "rows": rows, "goal": goal,
        "survivor_check": {"ok": survivors_ok, "distinct": sorted(distinct), "text": text},
    }
    print(markdown(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    failed = [r["mode"] for r in rows if r["status"] in ("failed", "partly failed")]
    if failed:
        print(f"error: mode(s) failed: {', '.join(failed)} (details in the table / JSON)", file=sys.stderr)
    return 1 if failed or not survivors_ok or (args.check and goal.get("met") is not True) else 0


if __name__ == "__main__":
    sys.exit(main())
