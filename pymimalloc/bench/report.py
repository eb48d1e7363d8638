"""The benchmark report: a readable table, machine-readable JSON, and a chart."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from typing import Any, TextIO

from ..build import build_info
from ..options import options
from .kernels import ALLOCATORS, PATTERNS, Suite

RATIOS = (("heap", "pymalloc"), ("heap", "glibc"), ("mimalloc", "pymalloc"), ("mimalloc", "glibc"))


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


def write_table(suite: Suite, out: TextIO) -> None:
    """One row per pattern and size; ns/op (median) per allocator, then the ratios."""
    allocators = [a for a in ALLOCATORS if any(m.allocator == a for m in suite.measurements)]
    header = ["case"] + [f"{a} ns" for a in allocators]
    ratios = [(a, b) for a, b in RATIOS if a in allocators and b in allocators]
    header += [f"{a}/{b}" for a, b in ratios]
    rows = []
    for case, by_alloc in suite.by_case().items():
        row = [case.label] + [f"{by_alloc[a].median_ns:,.1f}" for a in allocators]
        row += [f"{by_alloc[a].median_ns / by_alloc[b].median_ns:.2f}" for a, b in ratios]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |", file=out)
    print("|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|", file=out)
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        print("| " + " | ".join(cells) + " |", file=out)
    print(f"\nns per operation, median of {suite.repeat} (the JSON has each sample and the range); "
          "ratio < 1 means the first allocator is faster.", file=out)
    for name, pattern in PATTERNS.items():
        if any(case.pattern == name for case in suite.by_case()):
            print(f"  {name}: op = {pattern.op}", file=out)


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


def write_plot(suite: Suite, path: str, title: str = "") -> None:
    """A PNG bar chart of ns/op per allocator (log scale). Raises PlotUnavailable without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, an optional extra: pip install 'pymimalloc[plot]' (or pip install matplotlib)"
        ) from None
    table = suite.by_case()
    cases = list(table)
    allocators = [a for a in ALLOCATORS if any(a in row for row in table.values())]
    width = 0.8 / len(allocators)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.45 * len(cases) + 2), 5.5))
    for i, name in enumerate(allocators):
        xs = [j + (i - (len(allocators) - 1) / 2) * width for j in range(len(cases))]
        values = [table[c][name].median_ns for c in cases]
        lows = [table[c][name].median_ns - table[c][name].min_ns for c in cases]
        highs = [table[c][name].max_ns - table[c][name].median_ns for c in cases]
        ax.bar(xs, values, width, label=name, yerr=[lows, highs], capsize=1.5)
    ax.set_yscale("log")
    ax.set_ylabel("ns per operation (median, range as error bar)")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([c.label for c in cases], rotation=60, ha="right", fontsize=8)
    ax.legend()
    info = machine()
    ax.set_title(title or f"pymimalloc bench: {info['cpu']}, {info['cores']} cores, Python {info['python']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
