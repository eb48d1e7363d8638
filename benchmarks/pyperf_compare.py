#!/usr/bin/env python3
"""Compare pyperformance benchmarks under several allocator modes of ONE Python interpreter.

What it measures
----------------
Each selected benchmark of the pyperformance suite (the ``run_benchmark.py`` scripts shipped
inside the ``pyperformance`` wheel, run directly with pyperf, not through ``pyperformance run``)
is timed with the same interpreter under each allocator mode:

``pymalloc``
    CPython's default allocator: neither ``PYTHONMALLOC`` nor ``PYMIMALLOC_INSTALL`` is set.
``pymimalloc``
    ``PYMIMALLOC_INSTALL=1``: the ``.pth`` file of an installed pymimalloc wheel calls
    ``pymimalloc.install()`` at start-up, so mimalloc serves Python's PyMem/PyObject domains.
``builtin-mimalloc``
    ``PYTHONMALLOC=mimalloc``: the mimalloc that CPython 3.13+ bundles (offered only on 3.13+).

(For development there is also ``malloc``, ``PYTHONMALLOC=malloc``: libc's malloc.)

pyperf passes only a few environment variables to its worker processes, so every run gets
``--inherit-environ=PYMIMALLOC_INSTALL,PYTHONMALLOC``. Before anything is measured each mode is
checked twice, once with ``python -c`` and once inside a real pyperf worker spawned exactly the way
the benchmarks spawn theirs; a mode whose allocator did not take effect stops the script instead
of being reported.

For each benchmark all modes run one after another (interleaved, so slow drifts of this machine
hit every mode alike); ``--rounds N`` repeats that, reversing the order of the modes every other
round, and pools the values of all rounds. The loop count pyperf calibrates in a benchmark's first
run is passed (``--loops``) to all its other runs, so every mode times the same amount of work.
A run that crashes in one mode is reported as failed (exit status 1), never dropped silently;
benchmarks that need packages the target lacks are skipped and listed.

How to read the ratios
----------------------
``ratio = mean time(mode) / mean time(pymalloc)``: below 1 the mode is faster than pymalloc,
above 1 it is slower. ``speedup = 1 / ratio = pymalloc / mode``: above 1 is faster.
The last row is the geometric mean over all benchmarks measured in every mode. A ratio marked
``~`` differs from 1 by less than twice its standard error (computed from the per-process means),
i.e. it is within noise. With ``--fast`` (the default) on a busy machine, differences of a few
per cent are usually noise; use ``--rounds 3`` or ``--rigorous`` before trusting them.

Usage
-----
    python benchmarks/pyperf_compare.py [--python PATH] [--benchmarks a,b,c]
        [--modes pymalloc,pymimalloc] [--rounds N] [--fast | --rigorous]
        [--processes N] [--values N] [--json PATH] [--quick]

The target interpreter (``--python``, default: the one running this script) needs ``pyperf`` and
``pyperformance`` installed (``PATH -m pip install pyperf pyperformance==1.11.0``) and, for the
``pymimalloc`` mode, a pymimalloc installed as a wheel (the wheel ships the ``.pth`` file).
This script itself uses only the standard library (Python 3.10+). Progress goes to stderr, the Markdown table
to stdout, the full results (with standard deviations, min-max, per-round means and peak RSS)
to ``--json PATH``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UTC = _dt.timezone.utc  # noqa: UP017 (datetime.UTC is 3.11+; this script also runs on 3.10)
PYPERFORMANCE_PIN = "1.11.0"
INHERITED_VARS = ["PYMIMALLOC_INSTALL", "PYTHONMALLOC"]  # extended by --inherit-environ
# Variables removed from every mode's environment before the mode's own are added: anything that
# changes which allocator Python uses, or hooks it.
STRIPPED_VARS = (
    "PYMIMALLOC_INSTALL",
    "PYTHONMALLOC",
    "PYTHONMALLOCSTATS",
    "PYTHONTRACEMALLOC",
    "PYTHONDEVMODE",
)

# Messages that a worker prints on stderr when it starts without the allocator asked for.
START_FAILURES = ("Error processing line", "pymimalloc: not installed as Python's allocator")

# Allocation-heavy subset that needs nothing beyond the standard library and pyperf.
# deepcopy yields three pyperf benchmarks (deepcopy, deepcopy_reduce, deepcopy_memo).
DEFAULT_BENCHMARKS = (
    "json_loads",
    "json_dumps",
    "deepcopy",
    "pickle",
    "unpickle",
    "nbody",
    "richards",
    "float",
    "gc_collect",
    "go",
    "chaos",
    "raytrace",
    "logging_format",
    "logging_simple",
    "regex_compile",
)
QUICK_BENCHMARKS = ("float", "json_dumps")

# Names that pyperformance's MANIFEST does not list but that select one sub-benchmark of a
# script through its positional argument: name -> (manifest name, extra arguments).
SUB_BENCHMARKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "logging_format": ("logging", ("format",)),
    "logging_simple": ("logging", ("simple",)),
    "logging_silent": ("logging", ("silent",)),
}

# pyperf presets: (processes, values). Warmups stay pyperf's default (1).
PRESETS = {"fast": (10, 2), "default": (20, 3), "rigorous": (40, 3)}
QUICK_PROCESSES, QUICK_VALUES = 3, 2


@dataclass(frozen=True)
class Mode:
    """An allocator mode: the environment variables that select it."""

    name: str
    env: dict[str, str]
    description: str
    min_python: tuple[int, int] | None = None
    hidden: bool = False


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("pymalloc", {}, "CPython's default allocator (no PYTHONMALLOC, no PYMIMALLOC_INSTALL)"),
        Mode("pymimalloc", {"PYMIMALLOC_INSTALL": "1"}, "pymimalloc.install() at start-up via its .pth file"),
        Mode("builtin-mimalloc", {"PYTHONMALLOC": "mimalloc"}, "CPython's bundled mimalloc", min_python=(3, 13)),
        Mode("malloc", {"PYTHONMALLOC": "malloc"}, "libc malloc (development stand-in)", hidden=True),
    )
}


class CompareError(Exception):
    """A problem that stops the script with a message and no traceback."""


# --------------------------------------------------------------------------------------------
# Code run inside the target interpreter
# --------------------------------------------------------------------------------------------

# Run by the target interpreter: discover.py describes it, evidence.py shows which allocators a process really
# has, probe.py records that evidence inside a pyperf worker.
SCRIPTS = Path(__file__).resolve().parent / "pyperf_scripts"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    """Print a progress line to stderr."""
    print(f"[pyperf_compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def inherit_option() -> str:
    return "--inherit-environ=" + ",".join(INHERITED_VARS)


def base_environ() -> dict[str, str]:
    env = dict(os.environ)
    for var in STRIPPED_VARS:
        env.pop(var, None)
    return env


def mode_environ(mode: Mode) -> dict[str, str]:
    env = base_environ()
    env.update(mode.env)
    return env


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def pip_hint(python: str) -> str:
    return f"{python} -m pip install pyperf pyperformance=={PYPERFORMANCE_PIN}"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "hostname": platform.node(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = list(os.getloadavg())
    return info


def fmt_ms(seconds: float | None) -> str:
    """Milliseconds with three significant digits (at least two decimals below 1 ms)."""
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3g}"


# --------------------------------------------------------------------------------------------
# Target interpreter
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    python: str
    info: dict[str, Any]

    @property
    def version_info(self) -> tuple[int, ...]:
        return tuple(self.info["version_info"])

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        manifest: dict[str, dict[str, Any]] = self.info.get("manifest", {})
        return manifest


def discover(python: str, workdir: Path) -> Target:
    """Ask the target interpreter about itself, pyperf and pyperformance's benchmarks."""
    exe = shutil.which(python) or python
    if not os.path.exists(exe):
        raise CompareError(f"--python {python}: no such interpreter")
    proc = subprocess.run(
        [exe, str(SCRIPTS / "discover.py")],
        check=False,
        env=base_environ(),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise CompareError(f"{exe} could not describe itself ({describe_exit(proc.returncode)}):\n"
                           f"{tail(proc.stderr)}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if info["errors"]:
        raise CompareError(
            f"{exe} cannot import what the benchmarks need:\n  " + "\n  ".join(info["errors"])
            + f"\nInstall them into that interpreter with:\n  {pip_hint(exe)}"
        )
    if not info.get("manifest"):
        raise CompareError(f"no benchmarks found in {info.get('benchmarks_dir')}; "
                           f"reinstall with:\n  {pip_hint(exe)}")
    if info.get("pyperformance_version") != PYPERFORMANCE_PIN:
        log(f"note: pyperformance {info.get('pyperformance_version')} installed; "
            f"this script was written against {PYPERFORMANCE_PIN}")
    return Target(exe, info)


# --------------------------------------------------------------------------------------------
# Mode checks
# --------------------------------------------------------------------------------------------


def evidence_problem(mode: Mode, ev: dict[str, Any]) -> str | None:
    """Why this evidence shows that `mode` is NOT in effect, or None if it is."""
    installed = ev.get("pymimalloc_installed")
    obj = ev.get("object_allocator")
    pre = ev.get("pre_config_allocator")
    if mode.name == "pymalloc":
        if installed:
            return f"pymimalloc is installed ({installed}) although PYMIMALLOC_INSTALL is not set"
        if obj != "pymalloc":
            return (f"the object allocator is {obj!r}, not pymalloc (a free-threaded build has no "
                    f"pymalloc; use --modes without pymalloc there)")
        return None
    if mode.name == "pymimalloc":
        if not installed or not isinstance(installed, list):
            why = {None: "pymimalloc has no installed() or is not importable"}.get(installed, installed)
            return (f"pymimalloc.installed() is not truthy (got {why!r}; pymimalloc: "
                    f"{ev.get('pymimalloc')})")
        if obj == "pymalloc" and any("obj" in str(d).lower() for d in installed):
            return (f"pymimalloc.installed() reports {installed}, yet sys._debugmallocstats() still "
                    f"shows pymalloc serving the object domain")
        return None
    if mode.name == "malloc":
        if obj != "other" or (pre is not None and pre != 3):
            return f"PYTHONMALLOC=malloc did not take effect (object allocator {obj!r}, pre_config allocator {pre})"
        return None
    if mode.name == "builtin-mimalloc":
        if obj == "mimalloc" or pre in (7, 8):
            return None
        return f"PYTHONMALLOC=mimalloc did not take effect (object allocator {obj!r}, pre_config allocator {pre})"
    return f"unknown mode {mode.name}"


def check_mode(target: Target, mode: Mode, workdir: Path, timeout: float) -> dict[str, Any]:
    """Prove that `mode` takes effect, with python -c and inside a pyperf worker; else raise."""
    env = mode_environ(mode)
    if mode.min_python and target.version_info[:2] < mode.min_python:
        raise CompareError(f"mode {mode.name} needs Python {'.'.join(map(str, mode.min_python))}+, "
                           f"the target is {target.info['version']}")
    result: dict[str, Any] = {"env": mode.env}

    if mode.name == "pymimalloc":
        cmd = [target.python, "-c",
               "import pymimalloc,sys; sys.exit(0 if pymimalloc.installed() else 1)"]
        proc = subprocess.run(cmd, check=False, env=env, cwd=workdir, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise CompareError(
                f"mode pymimalloc: `PYMIMALLOC_INSTALL=1 {target.python} -c \"import pymimalloc,sys; "
                f"sys.exit(0 if pymimalloc.installed() else 1)\"` failed ({describe_exit(proc.returncode)}):"
                f"\n{tail(proc.stderr) or '(pymimalloc.installed() is falsy)'}\n"
                "Is pymimalloc installed in that interpreter as a wheel (`pip install .`, which ships "
                "the .pth file that reads PYMIMALLOC_INSTALL)? To measure without it, leave the mode "
                "out: --modes pymalloc,..."
            )

    # 1. In a plain child process.
    proc = subprocess.run(
        [target.python, str(SCRIPTS / "evidence.py")],
        check=False, env=env, cwd=workdir, capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0:
        raise CompareError(f"mode {mode.name}: {target.python} does not start with "
                           f"{mode.env or 'a clean environment'} ({describe_exit(proc.returncode)}):\n"
                           f"{tail(proc.stderr)}")
    ev = json.loads(proc.stdout.strip().splitlines()[-1])
    problem = evidence_problem(mode, ev)
    if problem:
        raise CompareError(f"mode {mode.name}: {problem}\nevidence: {ev}")
    result["child"] = ev

    # 2. Inside a pyperf worker, spawned with the same options as the benchmarks' workers.
    probe = SCRIPTS / "probe.py"
    out = workdir / f"probe-{mode.name}-{time.monotonic_ns()}.json"
    cmd = [target.python, str(probe), "--debug-single-value", "--quiet",
           inherit_option(), "--output", str(out)]
    proc = subprocess.run(cmd, check=False, env=env, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise CompareError(f"mode {mode.name}: the pyperf probe failed ({describe_exit(proc.returncode)}):\n"
                           f"{tail(proc.stderr + proc.stdout)}")
    worker_ev = None
    for meta in iter_metadata(json.loads(out.read_text(encoding="utf-8"))):
        if "pmc_evidence" in meta:
            worker_ev = json.loads(meta["pmc_evidence"])
    if worker_ev is None:
        raise CompareError(f"mode {mode.name}: the pyperf probe recorded no evidence from its worker")
    problem = evidence_problem(mode, worker_ev)
    if problem:
        raise CompareError(f"mode {mode.name}: in a pyperf worker, {problem}\nevidence: {worker_ev}\n"
                           f"(pyperf was given {inherit_option()})")
    result["pyperf_worker"] = worker_ev
    return result


def iter_metadata(suite: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield suite.get("metadata") or {}
    for bench in suite.get("benchmarks", []):
        yield bench.get("metadata") or {}
        for run in bench.get("runs", []):
            yield run.get("metadata") or {}


# --------------------------------------------------------------------------------------------
# Running benchmarks and reading pyperf's JSON
# --------------------------------------------------------------------------------------------


@dataclass
class Selection:
    """One benchmark name given on the command line: a script plus its arguments."""

    name: str
    runscript: str
    extra_opts: list[str]
    problems: list[str]


@dataclass
class BenchValues:
    """The values of one pyperf benchmark from one pyperf invocation."""

    values: list[float]
    process_means: list[float]
    loops: int | None
    max_rss: list[int]


@dataclass
class RunFailure:
    skipped: bool
    reason: str


def resolve(target: Target, names: Sequence[str]) -> list[Selection]:
    sels = []
    manifest = target.manifest
    for name in names:
        base, extra = SUB_BENCHMARKS.get(name, (name, ()))
        if base not in manifest:
            known = sorted(set(manifest) | set(SUB_BENCHMARKS))
            raise CompareError(f"unknown benchmark {name!r}; known: {', '.join(known)}")
        entry = manifest[base]
        sels.append(Selection(name, entry.get("runscript", ""), list(entry.get("extra_opts", [])) + list(extra),
                              list(entry.get("problems", []))))
    return sels


def parse_suite(suite: dict[str, Any]) -> dict[str, BenchValues]:
    common = suite.get("metadata") or {}
    out: dict[str, BenchValues] = {}
    for bench in suite.get("benchmarks", []):
        bmeta = {**common, **(bench.get("metadata") or {})}
        name = bmeta.get("name", "?")
        values: list[float] = []
        means: list[float] = []
        rss: list[int] = []
        loops = bmeta.get("loops")
        for run in bench.get("runs", []):
            vals = run.get("values")
            if not vals:  # calibration run
                continue
            rmeta = run.get("metadata") or {}
            values.extend(vals)
            means.append(statistics.fmean(vals))
            loops = rmeta.get("loops", loops)
            if "mem_max_rss" in rmeta:
                rss.append(int(rmeta["mem_max_rss"]))
        if "mem_max_rss" in bmeta and not rss:
            rss.append(int(bmeta["mem_max_rss"]))
        out[name] = BenchValues(values, means, loops, rss)
    return out


def run_benchmark(target: Target, sel: Selection, mode: Mode, pyperf_opts: list[str], loops: int | None,
                  workdir: Path, raw_dir: Path | None, round_no: int, timeout: float,
                  verbose: bool) -> dict[str, BenchValues] | RunFailure:
    out = workdir / f"{sel.name}-{mode.name}-r{round_no}.json"
    if out.exists():
        out.unlink()
    cmd = [target.python, sel.runscript, *sel.extra_opts, *pyperf_opts,
           inherit_option(), "--output", str(out)]
    if loops:
        cmd += ["--loops", str(loops)]
    if verbose:
        log("  $ " + " ".join(f"{k}={v}" for k, v in mode.env.items()) + (" " if mode.env else "")
            + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, check=False, env=mode_environ(mode), cwd=workdir, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return RunFailure(False, f"mode {mode.name}: timed out after {timeout:.0f} s")
    if verbose and proc.stdout.strip():
        print(tail(proc.stdout, 40), file=sys.stderr)
    text = proc.stderr + proc.stdout
    for marker in START_FAILURES:
        if marker in text:
            # site.py and pymimalloc's start-up hook report on stderr and carry on: the mode may not
            # have taken effect in some worker.
            return RunFailure(False, f"mode {mode.name}: start-up reported {marker!r}\n{tail(text)}")
    if proc.returncode != 0 or not out.exists():
        if "ModuleNotFoundError" in text or "No module named" in text:
            missing = [ln.strip() for ln in text.splitlines() if "No module named" in ln]
            return RunFailure(True, f"missing module: {missing[-1] if missing else tail(text, 1)}")
        return RunFailure(False, f"mode {mode.name}: {describe_exit(proc.returncode)}\n{tail(text)}")
    if raw_dir is not None:
        shutil.copy(out, raw_dir / out.name)
    result = parse_suite(json.loads(out.read_text(encoding="utf-8")))
    if not result or not all(bv.values for bv in result.values()):
        return RunFailure(False, f"mode {mode.name}: pyperf wrote no values to {out}")
    return result


# --------------------------------------------------------------------------------------------
# Statistics and reporting
# --------------------------------------------------------------------------------------------


@dataclass
class ModeResult:
    values: list[float] = field(default_factory=list)
    process_means: list[float] = field(default_factory=list)
    round_means: list[float] = field(default_factory=list)
    max_rss: list[int] = field(default_factory=list)
    loops: int | None = None

    def add(self, bv: BenchValues) -> None:
        self.values.extend(bv.values)
        self.process_means.extend(bv.process_means)
        self.round_means.append(statistics.fmean(bv.values))
        self.max_rss.extend(bv.max_rss)
        self.loops = bv.loops

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def stderr(self) -> float:
        pm = self.process_means
        return statistics.stdev(pm) / math.sqrt(len(pm)) if len(pm) > 1 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            "mean_s": self.mean,
            "stdev_s": self.stdev,
            "median_s": statistics.median(self.values),
            "min_s": min(self.values),
            "max_s": max(self.values),
            "n_values": len(self.values),
            "n_processes": len(self.process_means),
            "stderr_of_mean_s": self.stderr if math.isfinite(self.stderr) else None,
            "loops": self.loops,
            "round_means_s": self.round_means,
            "max_rss_median_bytes": int(statistics.median(self.max_rss)) if self.max_rss else None,
        }


@dataclass
class Row:
    name: str
    selection: str
    pyperf_name: str
    modes: dict[str, ModeResult] = field(default_factory=dict)


def geomean(xs: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def compare(row: Row, baseline: str, mode: str) -> dict[str, Any] | None:
    if baseline not in row.modes or mode not in row.modes:
        return None
    b, m = row.modes[baseline], row.modes[mode]
    ratio = m.mean / b.mean
    se = math.sqrt(b.stderr ** 2 + m.stderr ** 2)
    return {
        "ratio": ratio,
        "speedup": 1 / ratio,
        "significant": bool(math.isfinite(se) and abs(m.mean - b.mean) > 2 * se),
    }


def complete_rows(rows: list[Row], modes: Sequence[str]) -> list[Row]:
    return [r for r in rows if all(m in r.modes and r.modes[m].values for m in modes)]


def markdown(report: dict[str, Any], rows: list[Row], modes: list[str], baseline: str) -> str:
    t = report["target"]
    mach = report["machine"]
    others = [m for m in modes if m != baseline]
    lines = [
        "## pyperformance under allocator modes",
        "",
        f"Python {t['version']} ({t['implementation']}{', free-threaded' if t['gil_disabled'] else ''}, "
        f"`{t['executable']}`) · {mach['cpu_model']}, {mach['cpu_count']} cores · {report['date']} · "
        f"pyperf {t.get('pyperf_version')}, pyperformance {t.get('pyperformance_version')}"
        + (f", pymimalloc {t['pymimalloc_version']} (mimalloc {t.get('mimalloc_version')})"
           if t.get("pymimalloc_version") else "")
        + f" · pyperf {' '.join(report['pyperf_options'])} · {report['rounds']} round(s), modes interleaved",
        "",
        (
            f"Times are means in ms ± std dev. ratio = mode / {baseline} (< 1: faster than {baseline}); "
            f"speedup = {baseline} / mode (> 1: faster). `~`: within 2 standard errors, i.e. noise."
        ),
        "",
    ]
    header = ["benchmark", f"{baseline} ms"]
    for m in others:
        header += [f"{m} ms", f"{m} ratio", f"{m} speedup"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")

    def cell(r: Row, m: str) -> str:
        mr = r.modes.get(m)
        if mr is None or not mr.values:
            return "-"
        return f"{fmt_ms(mr.mean)} ± {fmt_ms(mr.stdev)}"

    for r in rows:
        cells = [r.name, cell(r, baseline)]
        for m in others:
            c = compare(r, baseline, m)
            cells.append(cell(r, m))
            if c is None:
                cells += ["-", "-"]
            else:
                mark = "" if c["significant"] else "~"
                cells += [f"{mark}{c['ratio']:.3f}", f"{c['speedup']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    full = complete_rows(rows, modes)
    if others and full:
        cells = [f"**geometric mean** ({len(full)})", ""]
        for m in others:
            g = report["geomean"][m]
            cells += ["", f"**{g['ratio']:.3f}**", f"**{g['speedup']:.3f}**"]
        lines.append("| " + " | ".join(cells) + " |")

    rss_rows = [r for r in rows if all(r.modes.get(m) and r.modes[m].max_rss for m in modes)]
    if rss_rows:
        lines += ["", "Peak RSS of a worker process (median over processes, MiB):", "",
                  "| benchmark | " + " | ".join(modes) + " |",
                  "|---|" + "|".join(["---:"] * len(modes)) + "|"]
        for r in rss_rows:
            lines.append(f"| {r.name} | " + " | ".join(
                f"{statistics.median(r.modes[m].max_rss) / 2 ** 20:.1f}" for m in modes) + " |")

    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items())]
    if report["failed"]:
        lines += ["", "**Failed:** " + "; ".join(f"{k} ({v.splitlines()[0]})" for k, v in report["failed"].items())]
    if report.get("interrupted"):
        lines += ["", "**Interrupted**: partial results."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    public = [m for m in MODES.values() if not m.hidden]
    p = argparse.ArgumentParser(
        description="Time pyperformance benchmarks under several allocator modes of one Python "
                    "and print ratios to pymalloc as a Markdown table.",
        epilog="Modes: " + "; ".join(f"{m.name}: {m.description}" for m in public)
               + ". Default: pymalloc,pymimalloc (+ builtin-mimalloc on 3.13+).",
    )
    p.add_argument("--python", default=sys.executable,
                   help="interpreter to benchmark (needs pyperf and pyperformance; default: this one)")
    p.add_argument("--benchmarks", help="comma-separated pyperformance benchmark names "
                                        f"(default: {','.join(DEFAULT_BENCHMARKS)})")
    p.add_argument("--modes", help="comma-separated modes; the first is the baseline of the ratios "
                                   "(pymalloc is always moved first when present)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every mode of every benchmark N times, alternating the order (default 1)")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--fast", dest="preset", action="store_const", const="fast",
                        help="pyperf --fast: 10 processes x 2 values (the default)")
    preset.add_argument("--rigorous", dest="preset", action="store_const", const="rigorous",
                        help="pyperf --rigorous: 40 processes x 3 values (about 6x longer)")
    p.add_argument("--processes", type=int, help="pyperf worker processes per run (overrides the preset)")
    p.add_argument("--values", type=int, help="pyperf values per process (overrides the preset)")
    p.add_argument("--warmups", type=int, help="pyperf warm-up values per process (default 1)")
    p.add_argument("--min-time", type=float, help="pyperf minimum duration of a value in s (default 0.1)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {' and '.join(QUICK_BENCHMARKS)}, {QUICK_PROCESSES} processes x "
                        f"{QUICK_VALUES} values")
    p.add_argument("--json", metavar="PATH", help="write all results and statistics as JSON")
    p.add_argument("--raw-dir", metavar="DIR", help="keep pyperf's own JSON files in DIR")
    p.add_argument("--inherit-environ", metavar="VARS",
                   help="more comma-separated environment variables for pyperf to pass to its workers, "
                        f"besides {','.join(INHERITED_VARS)} (e.g. MIMALLOC_SHOW_STATS)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per pyperf run (default 900)")
    p.add_argument("--list", action="store_true", help="list the benchmarks the target offers, and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="show commands and pyperf's output")
    p.set_defaults(preset="fast")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def pyperf_options(args: argparse.Namespace) -> list[str]:
    if args.quick and args.processes is None and args.values is None:
        args.processes, args.values = QUICK_PROCESSES, QUICK_VALUES
    opts: list[str] = []
    if args.processes is None and args.values is None:
        opts.append(f"--{args.preset}")
    else:
        # pyperf's --fast/--rigorous would override -p/-n: pass explicit numbers instead.
        dp, dv = PRESETS[args.preset]
        opts += ["--processes", str(args.processes or dp), "--values", str(args.values or dv)]
    if args.warmups is not None:
        opts += ["--warmups", str(args.warmups)]
    if args.min_time is not None:
        opts += ["--min-time", str(args.min_time)]
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pyperf_compare-") as tmp:
        try:
            return run(args, Path(tmp))
        except CompareError as exc:
            print(f"pyperf_compare: error: {exc}", file=sys.stderr)
            return 2


def run(args: argparse.Namespace, workdir: Path) -> int:
    if args.inherit_environ:
        INHERITED_VARS.extend(v.strip() for v in args.inherit_environ.split(",") if v.strip())
    target = discover(args.python, workdir)
    if args.list:
        for name, entry in sorted(target.manifest.items()):
            print(name + (f"  [skip: {'; '.join(entry['problems'])}]" if entry["problems"] else ""))
        for name, (base, extra) in SUB_BENCHMARKS.items():
            print(f"{name}  (= {base} {' '.join(extra)})")
        return 0

    # Modes.
    if args.modes:
        mode_names = list(dict.fromkeys(m.strip() for m in args.modes.split(",") if m.strip()))
    else:
        mode_names = ["pymalloc", "pymimalloc"]
        if target.version_info[:2] >= (3, 13):
            mode_names.append("builtin-mimalloc")
    unknown = [m for m in mode_names if m not in MODES]
    if unknown:
        raise CompareError(f"unknown mode(s) {', '.join(unknown)}; choose from "
                           + ", ".join(m.name for m in MODES.values() if not m.hidden))
    if "pymalloc" in mode_names:
        mode_names.remove("pymalloc")
        mode_names.insert(0, "pymalloc")
    baseline = mode_names[0]
    modes = [MODES[m] for m in mode_names]

    # Benchmarks.
    if args.benchmarks:
        names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    else:
        names = list(QUICK_BENCHMARKS if args.quick else DEFAULT_BENCHMARKS)
    selections = resolve(target, names)
    opts = pyperf_options(args)
    raw_dir = Path(args.raw_dir) if args.raw_dir else None
    if raw_dir:
        raw_dir.mkdir(parents=True, exist_ok=True)

    log(f"target {target.python}: Python {target.info['version']}, pyperf {target.info['pyperf_version']}, "
        f"pyperformance {target.info['pyperformance_version']} ({target.info['benchmarks_dir']})")
    checks: dict[str, Any] = {}
    for mode in modes:
        log(f"checking mode {mode.name} ({' '.join(f'{k}={v}' for k, v in mode.env.items()) or 'clean env'})")
        checks[mode.name] = check_mode(target, mode, workdir, args.timeout)
        ev = checks[mode.name]["pyperf_worker"]
        kind = {"other": "neither pymalloc nor CPython's mimalloc"}.get(ev["object_allocator"], ev["object_allocator"])
        log(f"  ok: in a pyperf worker the object allocator is {kind}"
            + (f", pymimalloc installed for {ev['pymimalloc_installed']}" if ev.get("pymimalloc_installed") else ""))

    report: dict[str, Any] = {
        "date": _dt.datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "target": {k: v for k, v in target.info.items() if k not in ("manifest", "errors")},
        "machine": machine_info(),
        "modes": {m.name: {"env": m.env, "description": m.description} for m in modes},
        "baseline": baseline,
        "pyperf_options": [*opts, inherit_option()],
        "rounds": args.rounds,
        "mode_checks": checks,
        "benchmarks": {},
        "geomean": {},
        "skipped": {},
        "failed": {},
    }
    rows: list[Row] = []
    started = time.monotonic()
    runnable = []
    for sel in selections:
        if sel.problems:
            report["skipped"][sel.name] = "; ".join(sel.problems)
            log(f"skip {sel.name}: {report['skipped'][sel.name]}")
        else:
            runnable.append(sel)
    log(f"{len(runnable)} benchmark(s) x {len(modes)} mode(s) x {args.rounds} round(s), pyperf {' '.join(opts)}")

    try:
        for i, sel in enumerate(runnable, 1):
            sel_rows: dict[str, Row] = {}
            loops: int | None = None
            failure: RunFailure | None = None
            for rnd in range(args.rounds):
                order = modes if rnd % 2 == 0 else modes[::-1]
                for mode in order:
                    t0 = time.monotonic()
                    res = run_benchmark(target, sel, mode, opts, loops, workdir, raw_dir, rnd,
                                        args.timeout, args.verbose)
                    if isinstance(res, RunFailure):
                        if res.skipped and sel_rows:
                            # Ran in another mode: a module missing only here is this mode's fault.
                            res = RunFailure(False, f"mode {mode.name}: {res.reason}")
                        failure = res
                        break
                    if loops is None and len(res) == 1:
                        # Reuse the calibrated loop count: every mode times the same work.
                        loops = next(iter(res.values())).loops
                    for pname, bv in res.items():
                        rname = sel.name if len(res) == 1 else pname
                        row = sel_rows.setdefault(pname, Row(rname, sel.name, pname))
                        row.modes.setdefault(mode.name, ModeResult()).add(bv)
                    summary = ", ".join(f"{p} {fmt_ms(statistics.fmean(bv.values))} ms" for p, bv in res.items())
                    log(f"[{i}/{len(runnable)}] {sel.name} round {rnd + 1}/{args.rounds} {mode.name}: "
                        f"{summary} ({time.monotonic() - t0:.1f} s)")
                if failure:
                    break
            if failure:
                key = "skipped" if failure.skipped else "failed"
                report[key][sel.name] = failure.reason
                log(f"[{i}/{len(runnable)}] {sel.name} {key.upper()}: {failure.reason}")
                continue
            rows.extend(sel_rows.values())
    except KeyboardInterrupt:
        report["interrupted"] = True
        log("interrupted: reporting what was measured")

    report["elapsed_s"] = round(time.monotonic() - started, 1)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = list(os.getloadavg())
    full = complete_rows(rows, mode_names)
    for m in mode_names[1:]:
        if full:
            g = geomean([r.modes[m].mean / r.modes[baseline].mean for r in full])
            report["geomean"][m] = {"ratio": g, "speedup": 1 / g, "n_benchmarks": len(full)}
    for r in rows:
        report["benchmarks"][r.name] = {
            "selection": r.selection,
            "pyperf_name": r.pyperf_name,
            "modes": {m: mr.to_json() for m, mr in r.modes.items()},
            "vs_baseline": {m: {k: v for k, v in (compare(r, baseline, m) or {}).items() if v is not None}
                            for m in mode_names[1:] if m in r.modes},
        }

    md = markdown(report, rows, mode_names, baseline)
    sys.stdout.write(md)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    log(f"done in {report['elapsed_s']:.0f} s")
    if report["failed"]:
        return 1
    return 130 if report.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
