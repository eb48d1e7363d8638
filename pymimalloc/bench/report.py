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
from .kernels import ALLOCATORS, PATTERNS, Case, Measurement, Suite, format_size

#: What each allocator column measures: the legend under every table (lines of at most 86 characters).
LEGEND = {
    "heap": ("a pymimalloc Heap, called from C (mi_heap_malloc): mimalloc in a heap of your own",),
    "pymimalloc": ("the same Heap through the bookkeeping every Block pays: its record, live counters",
                   "and tracemalloc hooks. A Block also pays Python's call (about 40 ns), as bytearray()",
                   "does; docs/benchmarks.md, \"From Python\", compares those (heap.malloc vs bytearray)"),
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
    """One line: in how many cases the heap was faster than pymalloc and than glibc, and the geometric mean of its
    time divided by theirs (below 1: faster; SUMMARY_NOTE, printed above it, says so)."""
    table = suite.by_case()
    parts: list[str] = []
    for other in (REFERENCE, "glibc"):
        ratios = [row["heap"].median_ns / row[other].median_ns for row in table.values() if "heap" in row and other in row]
        if ratios:
            wins = sum(r < 1 for r in ratios)
            mean = f"x{statistics.geometric_mean(ratios):.2f}"
            parts.append(f"than {other} in {wins} of {len(ratios)} cases (time {mean})" if not parts else
                         f"{other} in {wins} of {len(ratios)} ({mean})")
    return "summary: a Heap was faster " + ", ".join(parts) if parts else "summary: no Heap measurements"


#: the line above the summary: what its "time x" figures are
SUMMARY_NOTE = "time xR: the geometric mean over the cases of the Heap's time / the other's (below 1: faster)"


def write_table(suite: Suite, out: TextIO, ratios: bool = False) -> None:
    """ns/op per allocator, one row per case, with a legend and a summary line; ``ratios``: also each
    allocator's time divided by pymalloc's. Every line fits in 100 columns."""
    allocators = _allocators(suite)
    table = suite.by_case()
    rows = [[case.label] + [f"{by_alloc[a].median_ns:,.1f}" for a in allocators] for case, by_alloc in table.items()]
    more = "" if ratios else f"; --ratios adds each time / {REFERENCE}'s"
    runs = "1 run" if suite.repeat == 1 else f"{suite.repeat} runs"
    print(f"ns per operation, median of {runs} (lower is faster{more}):", file=out)
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
    print(SUMMARY_NOTE, file=out)
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


def from_json(data: dict[str, Any]) -> Suite:
    """The Suite a ``--json`` file holds (to draw or tabulate a saved run again)."""
    measurements = [
        Measurement(Case(r["pattern"], r["size"], r["param"]), r["allocator"], r["ns_per_op"], r["min_ns"],
                    r["max_ns"], tuple(r["samples"]))
        for r in data["results"]
    ]
    return Suite(measurements, data["repeat"], data["quick"])


def write_json(suite: Suite, path: str) -> None:
    with open(path, "w") as f:
        json.dump(to_json(suite), f, indent=1)
        f.write("\n")


def write_markdown(suite: Suite, path: str, command: str, plot: str = "") -> None:
    """A Markdown page of the run: what ran where, ns per operation, each time over the best default's
    (the heatmap's numbers), the legend and the summary. ``plot``: a chart to show, relative to ``path``."""
    info, build = machine(), build_info()
    allocators = _allocators(suite)
    table = suite.by_case()
    ratios = best_default_ratios(suite)
    with open(path, "w") as out:
        print("# pymimalloc bench: the full table\n", file=out)
        print(f"`{command}`, {datetime.date.today()}, {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
              f"pymimalloc built with `{' '.join(build['cflags'])}`. Median of {suite.repeat} runs.\n", file=out)
        if plot:
            print(f"![time over the best default, per pattern, size and allocator]({plot})\n", file=out)
        print("## ns per operation (lower is faster)\n", file=out)
        _print_table(["case", *allocators], [
            [case.label] + [f"{by_alloc[a].median_ns:,.1f}" for a in allocators] for case, by_alloc in table.items()
        ], out)
        print(f"\n## time / the best default's (the faster of {' and '.join(DEFAULTS)}; below 1: faster)\n",
              file=out)
        _print_table(["case", *allocators], [
            [case.label] + [_ratio_label(by_alloc[a]) if a in by_alloc else "" for a in allocators]
            for case, by_alloc in ratios.items()
        ], out)
        print("\n## Columns and rows\n", file=out)
        for name in allocators:
            print(f"- `{name}`: " + " ".join(LEGEND[name]), file=out)
        for name, pattern in PATTERNS.items():
            if any(case.pattern == name for case in table):
                print(f"- `{name}`: one operation is {pattern.op}", file=out)
        print(f"\n{SUMMARY_NOTE}\n\n{summary(suite)}", file=out)


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


#: The allocators the heatmap divides by: Python's two defaults. Each cell is a time over the faster of them.
DEFAULTS = ("pymalloc", "glibc")
#: Fixed colour limits of the heatmap: ratios beyond 1/8 and 8 take the end colours. The colormap is
#: diverging and centred at 1.0 on a log scale (blue: faster than the best default, red: slower).
RATIO_LIMITS = (1 / 8, 8.0)
COLORMAP = "RdBu_r"


def best_default_ratios(suite: Suite) -> dict[Any, dict[str, float]]:
    """Each allocator's median time over the best default's (the faster of pymalloc and glibc) in that case.

    Cases without either default are left out.
    """
    ratios: dict[Any, dict[str, float]] = {}
    for case, by_alloc in suite.by_case().items():
        defaults = [by_alloc[d].median_ns for d in DEFAULTS if d in by_alloc]
        if defaults:
            best = min(defaults)
            ratios[case] = {a: m.median_ns / best for a, m in by_alloc.items()}
    return ratios


def _heatmap_grid(suite: Suite) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    """Columns (sizes, then "own sizes" for patterns that pick their own) and rows: one per pattern and
    parameter, each with its case per column (None where it was not run)."""
    cases = list(best_default_ratios(suite))
    sizes = sorted({c.size for c in cases if c.size})
    columns = [format_size(s) for s in sizes] + (["own sizes"] if any(not c.size for c in cases) else [])
    rows: dict[str, list[Any]] = {}
    for case in cases:
        pattern = PATTERNS[case.pattern]
        name = f"{case.pattern} {pattern.param_name}={case.param}" if pattern.param_name else case.pattern
        row = rows.setdefault(name, [None] * len(columns))
        row[sizes.index(case.size) if case.size else len(columns) - 1] = case
    return columns, list(rows.items())


def _ratio_label(ratio: float) -> str:
    return f"{ratio:.2f}" if ratio < 10 else f"{ratio:.0f}"


def write_plot(suite: Suite, path: str, title: str = "") -> None:
    """A PNG heatmap: one row per pattern and allocator, one column per size; each cell is that
    allocator's time over the best default's (the faster of pymalloc and glibc), printed in the cell.

    The colours are fixed, so charts of different runs compare at a glance: a diverging colormap centred
    at 1.0 on a log scale, clipped at RATIO_LIMITS, and the allocators always in the same order.
    Raises PlotUnavailable without matplotlib.
    """
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]  # optional (the plot extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
        from matplotlib.colors import LogNorm  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, an optional extra: pip install 'pymimalloc[plot]' (or pip install matplotlib)"
        ) from None
    ratios = best_default_ratios(suite)
    columns, groups = _heatmap_grid(suite)
    allocators = _allocators(suite)
    cells = [[ratios[c][a] if c is not None and a in ratios[c] else float("nan") for c in cases]
             for _, cases in groups for a in allocators]
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(columns) + 2.2, 0.9 + 0.19 * len(cells)))
    norm = LogNorm(vmin=RATIO_LIMITS[0], vmax=RATIO_LIMITS[1], clip=True)
    image = ax.imshow(cells, cmap=COLORMAP, norm=norm, aspect="auto", interpolation="none")
    for y, row in enumerate(cells):
        for x, ratio in enumerate(row):
            if ratio == ratio:  # not NaN
                dark = abs(norm(ratio) - 0.5) > 0.3
                ax.text(x, y, _ratio_label(ratio), ha="center", va="center", fontsize=6.5,
                        color="white" if dark else "black")
    ax.set_xticks(range(len(columns)), columns, fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(cells)), [a for _ in groups for a in allocators], fontsize=6.5)
    for index, (name, _) in enumerate(groups):
        middle = index * len(allocators) + (len(allocators) - 1) / 2
        ax.annotate(name, (0, middle), xycoords=("axes fraction", "data"), xytext=(-46, 0),
                    textcoords="offset points", ha="right", va="center", fontsize=7.5, fontweight="bold")
        if index:
            ax.axhline(index * len(allocators) - 0.5, color="black", linewidth=0.8)
    ax.tick_params(axis="y", pad=2, length=0)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, extend="both")
    ticks = [0.125, 0.25, 0.5, 1, 2, 4, 8]
    bar.ax.minorticks_off()
    bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    bar.ax.tick_params(labelsize=7)
    bar.set_label("time / best default's (below 1: faster)", fontsize=7)
    info = machine()
    fig.suptitle(title or f"pymimalloc bench: time / the faster of pymalloc and glibc, median of {suite.repeat}; "
                          f"{info['cpu']}, {info['cores']} cores, Python {info['python']}", fontsize=8.5)
    fig.subplots_adjust(left=0.27, right=0.92, top=1 - 0.7 / fig.get_figheight(), bottom=0.15 / fig.get_figheight())
    fig.savefig(path, dpi=110)
    plt.close(fig)
