"""CPython's own regression tests, run plain and under pymimalloc: which test outcomes differ?

    python benchmarks/cpython_tests.py [--python PATH] [--modules a,b] [--other-mode pymimalloc|malloc]
                                       [--jobs 2] [--json PATH] [--quick]

What it measures: whether routing CPython's allocator domains to mimalloc (``pymimalloc.install()``)
changes the behaviour of the interpreter, as seen by a subset of CPython's regression test package
(``python -m test``, libregrtest, shipped with the interpreter). The same interpreter runs the same test
modules twice, one after the other:

- ``plain``: ``python -m test ...`` with PYTHONMALLOC and PYMIMALLOC_INSTALL removed from the environment
  (CPython's default allocator, pymalloc);
- the other mode, ``pymimalloc`` (default): ``python -m pymimalloc run -m test ...`` with
  ``PYMIMALLOC_INSTALL=1`` in the environment. libregrtest runs every test module in a worker subprocess
  (``-jN``), started as ``python -u -m test.libregrtest.worker ...`` with the parent's environment: the
  variable makes those workers (and any interpreter the tests start in turn) install pymimalloc at
  start-up through the package's .pth file, while ``run`` covers the main process;
- or, for development and as a reference, ``--other-mode malloc``: ``PYTHONMALLOC=malloc`` (glibc).

Before the runs a sanity check starts a tiny script the way the test processes are started and asks it
which allocator is in place (``_testcapi``/``_testinternalcapi.pymem_getallocatorsname()``, which raises
for custom allocators such as pymimalloc's) and what ``pymimalloc.installed()`` says; it must show that the
mode took effect, or the script stops with exit status 2.

Per-test outcomes come from libregrtest's ``--junit-xml`` file, not from its text output: for every test
case, pass / fail / error / skipped / xfail (expected failure) / xpass (unexpected success). Module-level
results (passed, failed (N errors), env changed, skipped, crashed worker, timed out...) come from the
one progress line libregrtest prints per module in ``-j`` mode; a module whose worker crashed has no XML,
so its test cases show as ``missing``. Both runs use a fixed ``--randseed`` and a per-module timeout.

The report (Markdown on stdout, ``--json PATH`` for the same data as JSON) gives the modules run, the count
of each outcome per mode, the wall time and exit code of each run, the module-level results that are not
"passed", every test case whose outcome differs (with the start of its failure message), and the test
cases that fail in both runs (problems of this machine or interpreter, tolerated by the comparison).

Exit status: 0 if no test outcome differs and the module-level results and exit codes of the two runs
are the same, 1 otherwise, 2 if the runs could not be made (no libregrtest, pymimalloc not importable by
--python in pymimalloc mode, the mode did not take effect).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any

# Allocation-heavy modules, each checked to exist in CPython 3.11, 3.12 and 3.13 (test_unicode became
# test_str in 3.13; the alias is resolved against the interpreter). About 40 s per run on 3.11 and 55 s on
# 3.13 with -j2 on two busy cores (no -u resources: the "cpu"-heavy cases are skipped in both runs).
# Beyond the containers and codecs named in the brief:
# - test_tracemalloc: tracemalloc hooks the very allocator domains install() replaces and must go on working;
# - test_sys: sys.getallocatedblocks(), sys._debugmallocstats(), __sizeof__ of objects;
# - test_capi: PyMem_* / PyObject_* through the C API; in 3.12+ it contains test_mem (PyMem_SetAllocator,
#   PYTHONMALLOC=debug hooks in subprocesses, pymem_getallocatorsname) -- the tests most likely to see the
#   allocator change. It takes under 30 s on 3.11 and 3.13 (sub-modules in one worker), so it is included;
# - test_ordered_dict, test_descr, test_marshal, test_xml_etree: many small objects, C accelerators;
# - test_zlib, test_bz2, test_lzma, test_decimal: C libraries given PyMem_* / PyMem_Raw* as their allocator.
DEFAULT_MODULES = [
    "test_dict", "test_list", "test_set", "test_unicode", "test_bytes", "test_json", "test_re", "test_pickle",
    "test_threading", "test_gc", "test_array", "test_deque", "test_collections", "test_weakref", "test_tuple",
    "test_long", "test_float", "test_memoryview", "test_struct", "test_tracemalloc", "test_sys", "test_capi",
    "test_ordered_dict", "test_descr", "test_marshal", "test_xml_etree", "test_zlib", "test_bz2", "test_lzma",
    "test_decimal",
]
QUICK_MODULES = ["test_list", "test_dict", "test_tracemalloc"]
ALIASES = {"test_unicode": "test_str", "test_str": "test_unicode"}
RANDSEED = 20240601
OUTCOMES = ["pass", "fail", "error", "skipped", "xfail", "xpass"]

# One line per finished module in -j mode: "0:00:04 load avg: 0.80 [ 1/22] test_json passed (4.9 sec) -- running..."
PROGRESS = re.compile(r"\[\s*\d+/\d+(?:/\d+)?\]\s+(test_[\w.]+)\s+(.*)$")
DURATION = re.compile(r"\s*\((?:\d+ (?:hour|min|sec|ms)\w*\s*)+\)$|\s*\([\d.]+ (?:sec|ms)\)$")

PROBE = r"""
import importlib.util, json, sys
info = {"version": sys.version.split()[0], "executable": sys.executable, "modules": {}}
try:
    import test.libregrtest
    info["libregrtest"] = True
except Exception as exc:
    info["libregrtest"] = False
    info["libregrtest_error"] = repr(exc)
try:
    import pymimalloc
    info["pymimalloc"] = getattr(pymimalloc, "__version__", "?")
    info["pymimalloc_file"] = pymimalloc.__file__
    info["pymimalloc_install"] = hasattr(pymimalloc, "install") and hasattr(pymimalloc, "installed")
except Exception as exc:
    info["pymimalloc"] = None
    info["pymimalloc_error"] = repr(exc)
for name in sys.argv[1:]:
    try:
        info["modules"][name] = importlib.util.find_spec("test." + name) is not None
    except Exception:
        info["modules"][name] = False
print(json.dumps(info))
"""

SANITY = r"""
import json, sys
info = {"executable": sys.executable}
name = None
for module in ("_testinternalcapi", "_testcapi"):
    try:
        name = __import__(module).pymem_getallocatorsname()
        break
    except (ImportError, AttributeError):
        continue
    except RuntimeError as exc:  # the allocators are not one of CPython's own
        name = "custom"
        break
info["allocator"] = name
try:
    import pymimalloc
    installed = getattr(pymimalloc, "installed", None)
    info["installed"] = list(installed()) if installed is not None else None
except ImportError as exc:
    info["installed"] = None
print(json.dumps(info))
"""


@dataclass
class Case:
    module: str
    name: str
    outcome: str
    message: str = ""


@dataclass
class Run:
    mode: str
    command: list[str]
    env: dict[str, str]  # the variables set on top of the cleaned environment
    log: str
    junit: str
    exit_code: int = -1
    wall_s: float = 0.0
    modules: dict[str, str] = field(default_factory=dict)  # module -> libregrtest's module-level result
    cases: dict[str, Case] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    junit_error: str = ""


def snippet(text: str, limit: int = 300) -> str:
    """The start of a failure message on one line (the exception line, without the traceback)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    joined = " / ".join(lines)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONMALLOC", "PYMIMALLOC_INSTALL"):
        env.pop(name, None)
    return env


def mode_env(mode: str) -> dict[str, str]:
    """The variables a mode sets on top of clean_env()."""
    if mode == "pymimalloc":
        return {"PYMIMALLOC_INSTALL": "1"}
    if mode == "malloc":
        return {"PYTHONMALLOC": "malloc"}
    return {}


def launcher(python: str, mode: str) -> list[str]:
    """How a mode starts the main process, up to the module or script to run."""
    return [python, "-m", "pymimalloc", "run"] if mode == "pymimalloc" else [python]


def probe(python: str, modules: list[str], cwd: str) -> dict[str, Any]:
    names = sorted(set(modules) | {ALIASES[m] for m in modules if m in ALIASES})
    done = subprocess.run([python, "-c", PROBE, *names], check=False, capture_output=True, text=True,
                          env=clean_env(), cwd=cwd)
    if done.returncode != 0:
        raise SystemExit(f"error: cannot run {python}: {done.stderr.strip() or done.returncode}")
    info: dict[str, Any] = json.loads(done.stdout)
    help_text = subprocess.run([python, "-m", "test", "--help"], check=False, capture_output=True, text=True,
                               env=clean_env(), cwd=cwd).stdout
    info["junit_xml"] = "--junit-xml" in help_text
    return info


def resolve_modules(requested: list[str], available: dict[str, bool]) -> tuple[list[str], list[str]]:
    """The modules to run (aliases resolved) and notes about the ones renamed or missing."""
    chosen: list[str] = []
    notes: list[str] = []
    for name in requested:
        if available.get(name):
            chosen.append(name)
        elif available.get(ALIASES.get(name, "")):
            chosen.append(ALIASES[name])
            notes.append(f"{name} is called {ALIASES[name]} in this version")
        else:
            notes.append(f"{name} does not exist in this version: left out")
    return list(dict.fromkeys(chosen)), notes


def sanity_checks(python: str, mode: str, workdir: str) -> list[dict[str, Any]]:
    """Start a tiny script the ways the test processes of `mode` are started; report what each one runs on."""
    script = os.path.join(workdir, f"sanity_{mode}.py")
    with open(script, "w") as f:
        f.write(SANITY)
    env_vars = mode_env(mode)
    ways: list[tuple[str, list[str], dict[str, str]]] = [
        ("main process", [*launcher(python, mode), script], env_vars),
        ("worker (-u, environment only)", [python, "-u", script], env_vars),
    ]
    if mode == "pymimalloc":
        ways.append(("`run` alone, without PYMIMALLOC_INSTALL", [*launcher(python, mode), script], {}))
    checks = []
    for label, command, extra in ways:
        done = subprocess.run(command, check=False, capture_output=True, text=True, env={**clean_env(), **extra},
                              cwd=workdir)
        check: dict[str, Any] = {"mode": mode, "how": label, "command": shlex.join(command), "env": extra,
                                 "exit_code": done.returncode}
        try:
            check.update(json.loads(done.stdout.strip().splitlines()[-1]))
        except (IndexError, ValueError):
            lines = (done.stderr or done.stdout or "no output").strip().splitlines()
            check["error"] = snippet("\n".join(lines[-3:]), 400)  # the end of a traceback says what went wrong
        if mode == "pymimalloc":
            check["ok"] = bool(check.get("installed"))
        elif mode == "malloc":
            check["ok"] = check.get("allocator") == "malloc"
        else:
            check["ok"] = check.get("allocator") in ("pymalloc", None) and not check.get("installed")
        checks.append(check)
    return checks


def outcome_of(case: ET.Element) -> tuple[str, str]:
    tags = {child.tag: child for child in case}
    for tag, outcome in (("error", "error"), ("failure", "fail")):
        if tag in tags:
            element = tags[tag]
            return outcome, element.get("message") or element.text or ""
    if "skipped" in tags:
        return "skipped", tags["skipped"].text or ""
    if "output" in tags:  # libregrtest records an expected failure as <output>
        return "xfail", tags["output"].get("message") or ""
    if "outcome" in tags:  # ... and an unexpected success as <outcome>UNEXPECTED_SUCCESS</outcome>
        return "xpass", tags["outcome"].text or ""
    return "pass", ""


def parse_junit(path: str, modules: list[str]) -> tuple[dict[str, Case], str]:
    """Test cases by a unique name. Each <testsuite> is one module (a worker's result); its module is the
    one most of its test ids name (doctests are named after the module they test, e.g. ``json.dumps``)."""
    if not os.path.exists(path):
        return {}, "no JUnit XML written (no module produced results)"
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        return {}, f"unreadable JUnit XML: {exc}"
    cases: dict[str, Case] = {}
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        elements = suite.findall("testcase")
        named = collections.Counter(
            e.get("name", "").split(".")[1] for e in elements if e.get("name", "").startswith("test.")
            and len(e.get("name", "").split(".")) > 1)
        module = named.most_common(1)[0][0] if named else "?"
        if module not in modules and named:
            module = next((m for m, _ in named.most_common() if m in modules), module)
        for element in elements:
            outcome, message = outcome_of(element)
            base = f"{module}::{element.get('name', '?')}"
            key, n = base, 1
            while key in cases:  # the same id twice in a module (e.g. a doctest run for both json modules)
                n += 1
                key = f"{base} #{n}"
            cases[key] = Case(module, element.get("name", "?"), outcome, snippet(message))
    return cases, ""


def module_results(log: str, modules: list[str]) -> dict[str, str]:
    """libregrtest's module-level result from its progress lines, durations and the running list removed."""
    results: dict[str, str] = {}
    with open(log, errors="replace") as f:
        for line in f:
            found = PROGRESS.search(line.rstrip("\n"))
            if not found or found.group(1) not in modules:
                continue
            text = found.group(2).split(" -- ", 1)[0].strip()
            results[found.group(1)] = DURATION.sub("", text).strip()
    return {m: results.get(m, "missing (no result line)") for m in modules}


def run_tests(python: str, mode: str, modules: list[str], jobs: int, timeout: int, workdir: str) -> Run:
    junit = os.path.join(workdir, f"junit_{mode}.xml")
    log = os.path.join(workdir, f"log_{mode}.txt")
    args = ["-m", "test", f"-j{jobs}", "--timeout", str(timeout), "--randseed", str(RANDSEED),
            "--junit-xml", junit, *modules]
    command = [*launcher(python, mode), *args]
    run = Run(mode, command, mode_env(mode), log, junit)
    print(f"[{mode}] {shlex.join(command)}  (log: {log})", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env={**clean_env(), **run.env}, cwd=workdir)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if PROGRESS.search(line):
                print(f"[{mode}] {line.rstrip()}", file=sys.stderr, flush=True)
        run.exit_code = proc.wait()
    run.wall_s = time.monotonic() - started
    run.modules = module_results(log, modules)
    run.cases, run.junit_error = parse_junit(junit, modules)
    counter = collections.Counter(case.outcome for case in run.cases.values())
    run.counts = {outcome: counter.get(outcome, 0) for outcome in OUTCOMES}
    return run


def compare(plain: Run, other: Run) -> dict[str, Any]:
    differing = []
    for key in sorted(set(plain.cases) | set(other.cases)):
        a, b = plain.cases.get(key), other.cases.get(key)
        if a is not None and b is not None and a.outcome == b.outcome:
            continue
        case = a or b
        assert case is not None
        message = next((c.message for c in (b, a) if c is not None and c.outcome in ("fail", "error", "xpass")), "")
        if not message:
            message = next((c.message for c in (b, a) if c is not None and c.message), "")
        differing.append({"module": case.module, "test": case.name,
                          "plain": a.outcome if a else "missing", other.mode: b.outcome if b else "missing",
                          "message": message})
    modules = [{"module": m, "plain": plain.modules[m], other.mode: other.modules[m]}
               for m in plain.modules if plain.modules[m] != other.modules.get(m)]
    in_both = [{"module": a.module, "test": a.name, "outcome": a.outcome, "message": a.message}
               for key, a in sorted(plain.cases.items())
               if a.outcome in ("fail", "error") and key in other.cases and other.cases[key].outcome == a.outcome]
    return {"differing_cases": differing, "differing_modules": modules, "failing_in_both": in_both,
            "exit_codes_differ": plain.exit_code != other.exit_code}


# Test cases whose outcome must differ, because they inspect pymalloc itself rather than use memory. Each is
# reported, with its reason, but does not fail the comparison (nor the module or exit code it changes).
EXPECTED_DIFFERENCES: dict[str, str] = {
    "test.test_sys.SysModuleTest.test_debugmallocstats":
        "asserts pymalloc's own statistics, which sys._debugmallocstats() prints only while pymalloc serves objects",
}


def unexpected(comparison: dict[str, Any]) -> dict[str, Any]:
    """What in ``comparison`` is not explained by EXPECTED_DIFFERENCES: cases, modules, exit codes."""
    cases = [d for d in comparison["differing_cases"] if d["test"] not in EXPECTED_DIFFERENCES]
    explained_modules = {d["module"] for d in comparison["differing_cases"] if d["test"] in EXPECTED_DIFFERENCES}
    unexplained_modules = {d["module"] for d in cases}
    modules = [m for m in comparison["differing_modules"]
               if m["module"] not in explained_modules or m["module"] in unexplained_modules]
    exit_codes = comparison["exit_codes_differ"] and (bool(cases) or bool(modules) or not explained_modules)
    return {"cases": cases, "modules": modules, "exit_codes_differ": exit_codes}


def command_text(run: Run) -> str:
    """The run's command as a shell line: the variables it sets, then the arguments after the interpreter."""
    assignments = [f"{k}={v}" for k, v in run.env.items()]
    return " ".join([*assignments, "python", shlex.join(run.command[1:])])


def markdown(report: dict[str, Any], plain: Run, other: Run) -> str:
    o = other.mode
    out: list[str] = []
    w = out.append
    info = report["python"]
    w(f"# CPython regression tests: plain vs {o}\n")
    w(f"- Interpreter: `{info['executable']}` (Python {info['version']})")
    if o == "pymimalloc":
        w(f"- pymimalloc {info.get('pymimalloc')} from `{info.get('pymimalloc_file')}`")
    w(f"- Modules ({len(report['modules'])}): {', '.join(report['modules'])}")
    for note in report["module_notes"]:
        w(f"  - {note}")
    w(f"- libregrtest options: `-j{report['jobs']} --timeout {report['timeout']} --randseed {RANDSEED} "
      f"--junit-xml FILE`")
    w(f"- Work directory (logs, XML): `{report['workdir']}`\n")
    w("## Sanity check: did the mode take effect?\n")
    w("| mode | started as | env | allocator | installed() | ok |")
    w("|---|---|---|---|---|---|")
    for c in report["sanity"]:
        env = " ".join(f"{k}={v}" for k, v in c["env"].items()) or "-"
        installed = c.get("installed")
        shown = "n/a" if installed is None else (", ".join(installed) or "()")
        allocator = c.get("allocator") or c.get("error", "?")
        w(f"| {c['mode']} | {c['how']} | {env} | {allocator} | {shown} | {'yes' if c['ok'] else '**NO**'} |")
    w("")
    w("## Runs\n")
    w(f"| | plain | {o} |")
    w("|---|---|---|")
    w(f"| command | `{command_text(plain)}` | `{command_text(other)}` |")
    w(f"| exit code | {plain.exit_code} | {other.exit_code} |")
    w(f"| wall time | {plain.wall_s:.1f} s | {other.wall_s:.1f} s |")
    w(f"| test cases | {len(plain.cases)} | {len(other.cases)} |")
    for outcome in OUTCOMES:
        w(f"| {outcome} | {plain.counts[outcome]} | {other.counts[outcome]} |")
    passed = [sum(1 for s in r.modules.values() if s == "passed") for r in (plain, other)]
    w(f"| modules passed | {passed[0]}/{len(plain.modules)} | {passed[1]}/{len(other.modules)} |")
    for run in (plain, other):
        if run.junit_error:
            w(f"\n{run.mode}: {run.junit_error}")
    w("")
    noteworthy = [m for m in plain.modules if plain.modules[m] != "passed" or other.modules.get(m) != "passed"]
    w("## Module-level results other than \"passed\"\n")
    if noteworthy:
        w(f"| module | plain | {o} | same |")
        w("|---|---|---|---|")
        for m in noteworthy:
            same = plain.modules[m] == other.modules.get(m)
            w(f"| {m} | {plain.modules[m]} | {other.modules.get(m)} | {'yes' if same else '**no**'} |")
    else:
        w("None: every module passed in both runs.")
    w("")
    diff = report["comparison"]["differing_cases"]
    w(f"## Test cases whose outcome differs: {len(diff)}\n")
    missing = collections.Counter((d["module"], "plain" if d["plain"] == "missing" else o)
                                  for d in diff if "missing" in (d["plain"], d[o]))
    shown_rows = [d for d in diff if "missing" not in (d["plain"], d[o])]
    for (module, absent_in), count in sorted(missing.items()):
        w(f"- {module}: {count} test case(s) absent from the {absent_in} run's XML "
          f"(module result there: {(plain if absent_in == 'plain' else other).modules.get(module, '?')})")
    if shown_rows:
        if missing:
            w("")
        w(f"| module | test case | plain | {o} | message |")
        w("|---|---|---|---|---|")
        for d in shown_rows[:200]:
            message = d["message"].replace("|", "\\|")
            w(f"| {d['module']} | `{d['test']}` | {d['plain']} | {d[o]} | {message} |")
        if len(shown_rows) > 200:
            w(f"\n({len(shown_rows) - 200} more in the JSON report)")
    elif not missing:
        w("None.")
    w("")
    both = report["comparison"]["failing_in_both"]
    w(f"## Failing or erroring in both runs (tolerated): {len(both)}\n")
    for d in both[:50]:
        w(f"- {d['module']} `{d['test']}` ({d['outcome']}): {d['message'][:200]}")
    if len(both) > 50:
        w(f"- ... {len(both) - 50} more in the JSON report")
    w("")
    expected = [d for d in diff if d["test"] in EXPECTED_DIFFERENCES]
    if expected:
        w("## Expected differences (they inspect pymalloc itself; not counted)\n")
        for d in expected:
            w(f"- `{d['test']}`: {EXPECTED_DIFFERENCES[d['test']]}")
        w("")
    verdict = "SAME" if report["ok"] else "DIFFERENT"
    reasons = []
    if diff:
        reasons.append(f"{len(diff)} test case outcome(s) differ ({len(expected)} expected)")
    if report["comparison"]["differing_modules"]:
        reasons.append(f"{len(report['comparison']['differing_modules'])} module-level result(s) differ")
    if report["comparison"]["exit_codes_differ"]:
        reasons.append(f"exit codes differ ({plain.exit_code} vs {other.exit_code})")
    if report["ok"] and reasons:
        reasons = ["only the expected differences above (with the module result and exit code they change)"]
    w(f"**Verdict: {verdict}**" + (f": {'; '.join(reasons)}." if reasons else
                                   " (no test outcome, module result or exit code differs)."))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to test (default: this one)")
    parser.add_argument("--modules", help="comma-separated test modules (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_MODULES)}")
    parser.add_argument("--other-mode", choices=["pymimalloc", "malloc"], default="pymimalloc",
                        help="what the plain run is compared with (malloc: PYTHONMALLOC=malloc, for development)")
    parser.add_argument("--jobs", type=int, default=2, help="libregrtest worker processes (-jN, at least 1)")
    parser.add_argument("--timeout", type=int, default=300, help="per-module timeout in seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--workdir", help="where logs and XML go (default: a new temporary directory)")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1: the module results are read from -j mode's progress lines")
    requested = ([m.strip() for m in args.modules.split(",") if m.strip()] if args.modules
                 else QUICK_MODULES if args.quick else DEFAULT_MODULES)
    workdir = args.workdir or tempfile.mkdtemp(prefix="pymimalloc-cpython-tests.")
    os.makedirs(workdir, exist_ok=True)
    # the runs happen in a work directory: a relative path to the interpreter must not depend on it
    python = os.path.abspath(args.python) if os.sep in args.python else args.python

    info = probe(python, requested, workdir)
    if not info["libregrtest"]:
        print(f"error: {python} has no test.libregrtest ({info.get('libregrtest_error')}): "
              "install the interpreter's test package", file=sys.stderr)
        return 2
    if not info["junit_xml"]:
        print(f"error: libregrtest of {python} has no --junit-xml option", file=sys.stderr)
        return 2
    if args.other_mode == "pymimalloc" and info["pymimalloc"] is None:
        print(f"error: {python} (Python {info['version']}) cannot import pymimalloc "
              f"({info.get('pymimalloc_error')}); install it for that interpreter "
              "(pip install -e /path/to/pymimalloc) or use --other-mode malloc", file=sys.stderr)
        return 2
    modules, notes = resolve_modules(requested, info["modules"])
    if not modules:
        print(f"error: none of the modules exists in {python}: {', '.join(requested)}", file=sys.stderr)
        return 2

    sanity = sanity_checks(python, "plain", workdir) + sanity_checks(python, args.other_mode, workdir)
    if not all(c["ok"] for c in sanity):
        print("error: sanity check failed: a mode did not take effect (the tests would not measure it)",
              file=sys.stderr)
        for c in sanity:
            env = " ".join(f"{k}={v}" for k, v in c["env"].items())
            print(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['mode']}, {c['how']}: {env} {c['command']} -> exit code "
                  f"{c['exit_code']}, allocator {c.get('allocator')}, installed() {c.get('installed')}"
                  + (f": {c['error']}" if "error" in c else ""), file=sys.stderr)
        if args.other_mode == "pymimalloc" and any(c["how"].startswith("worker") and not c["ok"] for c in sanity):
            print("hint: PYMIMALLOC_INSTALL=1 did not install pymimalloc at start-up: is the package's .pth file "
                  "installed in this environment (reinstall the package)?", file=sys.stderr)
        if args.other_mode == "pymimalloc" and not info.get("pymimalloc_install"):
            print("hint: this pymimalloc has no install()/installed() yet; use --other-mode malloc meanwhile",
                  file=sys.stderr)
        return 2

    plain = run_tests(python, "plain", modules, args.jobs, args.timeout, workdir)
    other = run_tests(python, args.other_mode, modules, args.jobs, args.timeout, workdir)
    comparison = compare(plain, other)
    left = unexpected(comparison)
    ok = not left["cases"] and not left["modules"] and not left["exit_codes_differ"]
    report: dict[str, Any] = {
        "python": info, "modules": modules, "requested_modules": requested, "module_notes": notes,
        "other_mode": args.other_mode, "jobs": args.jobs, "timeout": args.timeout, "randseed": RANDSEED,
        "workdir": workdir, "sanity": sanity, "comparison": comparison, "ok": ok,
        "runs": {run.mode: {**{k: v for k, v in asdict(run).items() if k != "cases"},
                            "cases": {k: {"outcome": c.outcome, "message": c.message} for k, c in run.cases.items()}}
                 for run in (plain, other)},
    }
    print(markdown(report, plain, other))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
