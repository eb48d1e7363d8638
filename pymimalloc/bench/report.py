"""The benchmark report: a readable table, machine-readable JSON, and a chart."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
from typing import Any, TextIO

from ..build import build_info
from ..options import options
from .kernels import ALLOCATORS, PATTERNS, Suite, format_size

#: What each allocator column measures: the legend under every table (lines of at most 86 characters).
LEGEND = {
    "heap": ("a pymimalloc Heap, called from C (mi_heap_malloc): mimalloc in a heap of your own",),
    "pymimalloc": ("the same Heap through the bookkeeping every Block pays: its record, live counters",
                   "and tracemalloc hooks. A Block also pays Python's call (about 40 ns), as bytearray()",
                   "does; the README's \"From Python\" compares those (heap.malloc vs bytearray, numpy)"),
    "mimalloc": ("mimalloc's default heap (mi_malloc), as a C program linked with mimalloc gets it",),
    "pymalloc": ("CPython's object allocator (PyObject_Malloc, GIL held), bare: no Python object made",),
    "glibc": ("the C library's malloc",),
}
#: The allocator the summary and --ratios compare with: the one Python uses for its objects.
REFERENCE = "pymalloc"


def machine() -> dict[str, Any]:
    """CPU model and count, OS and Python, as recorded with every result."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(), "python": sys.version.split()[0]}


def _allocators(suite: Suite) -> list[str]:
    return [a for a in ALLOCATORS if any(m.allocator == a for m in suite.measurements)]


def _print_table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |", file=out)
    print("|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|", file=out)
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        print("| " + " | ".join(cells) + " |", file=out)


def summary(suite: Suite) -> str:
    """One line: in how many cases the heap beat pymalloc and glibc, and the geometric mean of its time ratios."""
    table = suite.by_case()
    parts = []
    for other in (REFERENCE, "glibc"):
        ratios = [row["heap"].median_ns / row[other].median_ns for row in table.values() if "heap" in row and other in row]
        if ratios:
            wins = sum(r < 1 for r in ratios)
            parts.append(f"{other} in {wins} of {len(ratios)} cases (time x{statistics.geometric_mean(ratios):.2f})")
    return "summary: a Heap beat " + ", ".join(parts) if parts else "summary: no Heap measurements"


def write_table(suite: Suite, out: TextIO, ratios: bool = False) -> None:
    """ns/op per allocator, one row per case, with a legend and a summary line; ``ratios``: also each
    allocator's time divided by pymalloc's. Every line fits in 100 columns."""
    allocators = _allocators(suite)
    table = suite.by_case()
    rows = [[case.label] + [f"{by_alloc[a].median_ns:,.1f}" for a in allocators] for case, by_alloc in table.items()]
    more = "" if ratios else f"; --ratios adds each time / {REFERENCE}'s"
    print(f"ns per operation, median of {suite.repeat} runs (lower is faster{more}):", file=out)
    _print_table(["case", *allocators], rows, out)
    if ratios and REFERENCE in allocators:
        others = [a for a in allocators if a != REFERENCE]
        print(f"\ntime / {REFERENCE}'s time (below 1: faster than {REFERENCE}):", file=out)
        _print_table(["case", *others], [
            [case.label] + [f"{by_alloc[a].median_ns / by_alloc[REFERENCE].median_ns:.2f}" for a in others]
            for case, by_alloc in table.items()
        ], out)
    print("\ncolumns:", file=out)
    for name in allocators:
        for index, line in enumerate(LEGEND[name]):
            print(f"  {name if index == 0 else '':<10}  {line}", file=out)
    print("rows: one operation (op) is", file=out)
    for name, pattern in PATTERNS.items():
        if any(case.pattern == name for case in table):
            print(f"  {name:<10}  {pattern.op}", file=out)
    print(summary(suite), file=out)


def to_json(suite: Suite) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "build_info": build_info(),
        "options": dict(options),
        "repeat": suite.repeat,
        "quick": suite.quick,
        "results": [
            {"pattern": m.case.pattern, "size": m.case.size, "param": m.case.param, "allocator": m.allocator,
             "ns_per_op": m.median_ns, "min_ns": m.min_ns, "max_ns": m.max_ns, "samples": list(m.samples)}
            for m in suite.measurements
        ],
    }


def write_json(suite: Suite, path: str) -> None:
    with open(path, "w") as f:
        json.dump(to_json(suite), f, indent=1)
        f.write("\n")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _panels(suite: Suite) -> dict[str, list[Any]]:
    """Cases grouped into chart panels: one per pattern and parameter; unsized patterns share one."""
    panels: dict[str, list[Any]] = {}
    for case in suite.by_case():
        pattern = PATTERNS[case.pattern]
        if not pattern.sized:
            key = "other patterns"
        elif pattern.param_name:
            key = f"{case.pattern} {pattern.param_name}={case.param}"
        else:
            key = case.pattern
        panels.setdefault(key, []).append(case)
    return panels


def write_plot(suite: Suite, path: str, title: str = "") -> None:
    """A PNG chart of ns/op per allocator: one panel per pattern, sizes on the x axis (log-log).

    Raises PlotUnavailable without matplotlib.
    """
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]  # optional (the plot extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, an optional extra: pip install 'pymimalloc[plot]' (or pip install matplotlib)"
        ) from None
    table = suite.by_case()
    panels = _panels(suite)
    allocators = [a for a in ALLOCATORS if any(a in row for row in table.values())]
    columns = min(4, len(panels))
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    for ax, (name, cases) in zip(axes.flat, panels.items()):
        sized = all(case.size for case in cases)
        xs = [case.size for case in cases] if sized else list(range(len(cases)))
        for allocator in allocators:
            medians = [table[c][allocator].median_ns for c in cases]
            errors = [[m - table[c][allocator].min_ns for c, m in zip(cases, medians)],
                      [table[c][allocator].max_ns - m for c, m in zip(cases, medians)]]
            ax.errorbar(xs, medians, yerr=errors, marker="o", markersize=3, capsize=2, label=allocator,
                        linestyle="-" if sized else "none")
        ax.set_yscale("log")
        if sized:
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs)
            ax.set_xticklabels([format_size(x) for x in xs], rotation=45, fontsize=7)
        else:
            ax.set_xticks(xs)
            ax.set_xticklabels([c.label for c in cases], rotation=20, fontsize=7)
        ax.set_title(f"{name}: ns per {PATTERNS[cases[0].pattern].op}" if sized else name, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    info = machine()
    fig.suptitle(title or f"pymimalloc bench: ns/op, median of {suite.repeat} (bars: range); "
                          f"{info['cpu']}, {info['cores']} cores, Python {info['python']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
