#!/usr/bin/env python3
"""The glue's cost against a raw heap, on the C kernels, as the best of interleaved runs (a noisy machine).

    python benchmarks/glue_pair.py [--rounds 15] [--ops 2000000] [--tree DIR ...]
    python benchmarks/glue_pair.py --instructions [--ops 200000] [--tree DIR ...]

Runs pymimalloc.bench's kernels (pair 64 B, larson with 1 and 2 threads) over a Heap called from C
(``heap``: mi_heap_malloc/mi_free), through the glue a Block uses (``block``: pmi_block_alloc and
pmi_block_release: a record, brackets, live counters, tracemalloc hooks) and through the glue of Python objects
under ``python_objects()`` (``objects``: pmi_object_malloc and pmi_object_free: brackets and live counters, the
page looked up once, as the allocator hook does), alternating, and prints the lowest ns per operation of each and
their ratios to ``heap``. A tree too old to have the ``objects`` kernels shows "-" for it. ``--tree`` adds another checkout's build (its package directory is put
first on sys.path in a child process), so two commits compare in one run.

``--instructions`` counts instead of timing (valgrind's cachegrind ``Ir``, exact on a noisy machine): each
single-threaded case and kind runs in a child under cachegrind with ``--ops`` operations and with a tenth of
them, and the difference divided by the difference in operations is the instructions per operation.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

CHILD = r'''
import json, sys
sys.path.insert(0, sys.argv[1]) if sys.argv[1] else None
import pymimalloc
from pymimalloc import _core
rounds, ops = int(sys.argv[2]), int(sys.argv[3])
cases = [("pair 64 B", "pair", 64, 0, ops), ("larson threads=1", "larson", 64, 1, ops // 4),
         ("larson threads=2", "larson", 64, 2, ops // 4)]
best = {}
heap = pymimalloc.Heap()
kinds = ["heap", "pymimalloc", "objects"]
try:
    _core.bench_run(_core.BENCH_PATTERNS["pair"], "objects", heap, 64, 0, 10, 1, "probe")
except KeyError:  # a tree from before the objects kernels
    kinds.remove("objects")
for _ in range(rounds):
    for name, pattern, size, param, n in cases:
        for kind in kinds:
            ns = _core.bench_run(_core.BENCH_PATTERNS[pattern], kind, heap, size, param, n, 1, name)
            key = name + "|" + kind
            best[key] = min(best.get(key, ns), ns)
print(json.dumps(best))
'''

ONE = r'''
import sys
sys.path.insert(0, sys.argv[1]) if sys.argv[1] else None
import pymimalloc
from pymimalloc import _core
pattern, kind, param, ops = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
_core.bench_run(_core.BENCH_PATTERNS[pattern], kind, pymimalloc.Heap(), 64, param, ops, 1, pattern)
'''
SINGLE_THREADED = [("pair 64 B", "pair", 0), ("larson threads=1", "larson", 1)]


def instructions(tree: str, pattern: str, kind: str, param: int, ops: int) -> int:
    """Ir of a child that runs ``ops`` operations of one kernel."""
    proc = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                           sys.executable, "-c", ONE, tree, pattern, kind, str(param), str(ops)],
                          check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if found is None:
        raise SystemExit(proc.stderr[-2000:])
    return int(found.group(1).replace(",", ""))


HEADER = ("| tree | case | heap {unit} | block glue {unit} | ÷ heap | objects glue {unit} | ÷ heap |\n"
          "|---|---|---:|---:|---:|---:|---:|")


def row(tree: str, case: str, per_op: dict[str, float]) -> str:
    """One table row: heap, and each glue with its ratio to heap ("-" where the tree has no such kernels)."""
    heap = per_op["heap"]
    cells = [f"{heap:.1f}"]
    for kind in ("pymimalloc", "objects"):
        value = per_op.get(kind)
        cells += ["-", "-"] if value is None else [f"{value:.1f}", f"{value / heap:.2f}"]
    return f"| {tree} | {case} | " + " | ".join(cells) + " |"


def instructions_per_op(trees: list[str], ops: int) -> None:
    print(HEADER.format(unit="Ir/op"))
    for tree in trees:
        for name, pattern, param in SINGLE_THREADED:
            per_op: dict[str, float] = {}
            for kind in ("heap", "pymimalloc", "objects"):
                try:
                    per_op[kind] = (instructions(tree, pattern, kind, param, ops)
                                    - instructions(tree, pattern, kind, param, ops // 10)) / (ops - ops // 10)
                except subprocess.CalledProcessError:  # a tree from before the objects kernels
                    if kind != "objects" or not tree:
                        raise
            print(row(tree or "this tree", name, per_op), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, help="operations per run (default 2,000,000; 200,000 with --instructions)")
    parser.add_argument("--tree", action="append", default=[], help="another checkout to compare (its root)")
    parser.add_argument("--instructions", action="store_true", help="count instructions per operation instead")
    args = parser.parse_args()
    trees = [""] + args.tree
    if args.instructions:
        instructions_per_op(trees, args.ops or 200_000)
        return
    args.ops = args.ops or 2_000_000
    results = {}
    for tree in trees:  # one child per tree; each interleaves its own kinds, the trees run back to back
        out = subprocess.run([sys.executable, "-c", CHILD, tree, str(args.rounds), str(args.ops)],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        results[tree or "this tree"] = json.loads(out)
    print(HEADER.format(unit="ns"))
    for tree, best in results.items():
        for key in sorted({k.split("|")[0] for k in best}, key=lambda k: (k[0] != "p", k)):
            print(row(tree, key, {kind: best[key + "|" + kind] for kind in ("heap", "pymimalloc", "objects")
                                  if key + "|" + kind in best}))


if __name__ == "__main__":
    main()
