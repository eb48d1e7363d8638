"""Running the C benchmark kernels: what to run, how long, and the medians with their spread."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable
from typing import Any

from .. import _core
from ..heap import Heap

KIB = 1024
#: sizes for the fixed-size patterns, in bytes
SIZES = (16, 64, 256, 512, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB)
QUICK_SIZES = (64, 16 * KIB)

#: allocator name -> kernel selector
ALLOCATORS = _core.BENCH_ALLOCATORS


@dataclasses.dataclass(frozen=True)
class Pattern:
    """One workload shape of csrc/pmi_bench.h's table, and how the suite runs it."""

    name: str
    code: int
    op: str  #: what one ns/op figure counts
    sized: bool = True  #: runs over SIZES (fixed-size patterns)
    params: tuple[int, ...] = (0,)  #: batch sizes or thread counts
    param_name: str = ""


#: how the suite runs the patterns that are not sized, or take a parameter; the rest run over SIZES
_RUNS: dict[str, dict[str, Any]] = {
    "batch": {"params": (25, 100, 400, 1600), "param_name": "n"},
    "workset": {"sized": False},
    "realloc": {"sized": False},
    "larson": {"sized": False, "params": (1, 2), "param_name": "threads"},
}
#: the patterns in the C table's order: its numbers and texts, with how the suite runs each
PATTERNS = {name: Pattern(name, code, _core.BENCH_PATTERN_OPS[name], **_RUNS.get(name, {}))
            for name, code in _core.BENCH_PATTERNS.items()}


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the report: a pattern at one size and parameter."""

    pattern: str
    size: int  #: bytes (0 where the pattern picks its own sizes)
    param: int  #: batch size or thread count (0 if none)

    @property
    def label(self) -> str:
        pattern = PATTERNS[self.pattern]
        parts = [self.pattern]
        if pattern.param_name:
            parts.append(f"{pattern.param_name}={self.param}")
        if self.size:
            parts.append(format_size(self.size))
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """ns per operation of one allocator on one case: the median of the repeats and their range."""

    case: Case
    allocator: str
    median_ns: float
    min_ns: float
    max_ns: float
    samples: tuple[float, ...]


@dataclasses.dataclass
class Suite:
    """A run: its measurements in order, with what was asked."""

    measurements: list[Measurement]
    repeat: int
    quick: bool

    def by_case(self) -> dict[Case, dict[str, Measurement]]:
        table: dict[Case, dict[str, Measurement]] = {}
        for m in self.measurements:
            table.setdefault(m.case, {})[m.allocator] = m
        return table


def format_size(size: int) -> str:
    if size >= KIB * KIB and size % (KIB * KIB) == 0:
        return f"{size // (KIB * KIB)} MiB"
    if size >= KIB and size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} B"


def plan(patterns: Iterable[str] | None = None, sizes: Iterable[int] | None = None,
         quick: bool = False) -> list[Case]:
    """The cases to run, in report order. Unknown pattern names raise KeyError."""
    names = list(patterns) if patterns else list(PATTERNS)
    for name in names:
        if name not in PATTERNS:
            raise KeyError(f"unknown pattern {name!r}; choose from {', '.join(PATTERNS)}")
    wanted_sizes = tuple(sizes) if sizes else (QUICK_SIZES if quick else SIZES)
    cases = []
    for name in names:
        pattern = PATTERNS[name]
        params = pattern.params[1:2] if quick and len(pattern.params) > 2 else pattern.params
        for param in params:
            for size in (wanted_sizes if pattern.sized else (0,)):
                cases.append(Case(name, size, param))
    return cases


def _run_once(case: Case, allocator: str, heap: Heap, ops: int, seed: int) -> float:
    code = PATTERNS[case.pattern].code
    size = case.size or 64
    return _core.bench_run(code, allocator, heap, size, case.param, ops, seed, f"benchmark {case.label} on {allocator}")


def _calibrate(case: Case, allocator: str, heap: Heap, seconds: float) -> int:
    """Operations for one repeat to take about ``seconds`` (at least 2000)."""
    ops = 2000
    while True:
        ns = _run_once(case, allocator, heap, ops, 1)
        if ns * ops >= seconds * 0.25e9 or ops >= 1 << 26:
            return max(2000, int(seconds * 1e9 / max(ns, 0.1)))
        ops *= 8


def measure(case: Case, allocators: Iterable[str], heap: Heap, repeat: int, seconds: float) -> list[Measurement]:
    """Run ``case`` on each allocator ``repeat`` times, alternating allocators within each round."""
    names = list(allocators)
    ops = {name: _calibrate(case, name, heap, seconds) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeat):
        for name in names:
            samples[name].append(_run_once(case, name, heap, ops[name], 1000 + round_))
    return [Measurement(case, name, statistics.median(s), min(s), max(s), tuple(s)) for name, s in samples.items()]


def run_suite(cases: list[Case], repeat: int = 5, quick: bool = False,
              allocators: Iterable[str] = tuple(ALLOCATORS),
              progress: Callable[[int, int, Case], Any] | None = None) -> Suite:
    """Measure every case on every allocator; ``progress(done, total, case)`` is called before each case."""
    seconds = 0.02 if quick else 0.04
    measurements: list[Measurement] = []
    with Heap() as heap:
        for index, case in enumerate(cases):
            if progress is not None:
                progress(index, len(cases), case)
            measurements.extend(measure(case, allocators, heap, repeat, seconds))
            heap.collect()
    return Suite(measurements, repeat, quick)
