#!/usr/bin/env python3
"""The glue's cost against a raw heap, on the C kernels, as the best of interleaved runs (a noisy machine).

    python benchmarks/glue_pair.py [--rounds 15] [--ops 2000000] [--tree DIR ...]

Runs pymimalloc.bench's kernels (pair 64 B, larson with 1 and 2 threads) over a Heap called from C
(``heap``: mi_heap_malloc/mi_free) and through the glue a Block uses (``pymimalloc``: pmi_block_alloc and
pmi_block_release: brackets, live counters, tracemalloc hooks), alternating, and prints the lowest ns per
operation of each and their ratio. ``--tree`` adds another checkout's build (its package directory is put
first on sys.path in a child process), so two commits compare in one run.
"""

from __future__ import annotations

import argparse
import json
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
for _ in range(rounds):
    for name, pattern, size, param, n in cases:
        for kind in ("heap", "pymimalloc"):
            ns = _core.bench_run(_core.BENCH_PATTERNS[pattern], kind, heap, size, param, n, 1, name)
            key = name + "|" + kind
            best[key] = min(best.get(key, ns), ns)
print(json.dumps(best))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=2_000_000)
    parser.add_argument("--tree", action="append", default=[], help="another checkout to compare (its root)")
    args = parser.parse_args()
    trees = [""] + args.tree
    results = {}
    for tree in trees:  # one child per tree; each interleaves its own kinds, the trees run back to back
        out = subprocess.run([sys.executable, "-c", CHILD, tree, str(args.rounds), str(args.ops)],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        results[tree or "this tree"] = json.loads(out)
    print("| tree | case | heap ns | glue ns | glue/heap |")
    print("|---|---|---:|---:|---:|")
    for tree, best in results.items():
        for key in sorted({k.split("|")[0] for k in best}, key=lambda k: (k[0] != "p", k)):
            heap, glue = best[key + "|heap"], best[key + "|pymimalloc"]
            print(f"| {tree} | {key} | {heap:.1f} | {glue:.1f} | {glue / heap:.2f} |")


if __name__ == "__main__":
    main()
