"""Build the C glue with ThreadSanitizer and run the thread harness tests/c/pmi_glue_threads.c on it.

    python benchmarks/tsan.py                      # build, run ~8 s of threads, fail on any TSan report
    python benchmarks/tsan.py --selftest           # check that races in and under our glue are still reported
    python benchmarks/tsan.py --debug 3 --seconds 4 --seed 7 --harness-args "--forks 0"

The harness drives csrc/pmi_heap.c's protocol from many pthreads without Python (see its header comment).
It is compiled with csrc/pmi_mimalloc.c (all of mimalloc, from the verified tree build_ffi.locate_source()
finds) and csrc/pmi_heap.c using gcc -fsanitize=thread -O1 -g, the defines build_ffi.compile_options()
gives for a portable build at the chosen MI_DEBUG level, and MI_TSAN=1 (mimalloc's own TSan configuration:
no debug fills that TSan would see as races). It links the real libpython only for PyTraceMalloc_Track,
which returns -2 untouched while tracemalloc is not tracing (the harness checks this).

TSan runs with halt_on_error=1 and tests/c/tsan.supp. Every report fails the run; the summary says
whether a frame of the report is in our glue (csrc/) or the harness. tsan.supp may only name mimalloc
functions whose memory our glue never touches (see the file), and --selftest proves that a race whose
racing access is in our glue, or in mimalloc called from our glue, is still reported.

Exit status: 0 clean; 1 a TSan report, a harness failure or a failed selftest; 2 build problem.
Needs gcc (or $CC) with libtsan, and a Python with cffi (build_ffi imports it).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
HARNESS = REPO / "tests" / "c" / "pmi_glue_threads.c"
SUPPRESSIONS = REPO / "tests" / "c" / "tsan.supp"
SELFTESTS = ("glue", "block", "plain")  # see PMI_TSAN_SELFTEST in the harness

sys.path.insert(0, str(REPO))
import build_ffi  # noqa: E402  (the one place that knows the mimalloc tree and the flags)


def fail_build(message: str) -> None:
    print(f"tsan.py: {message}", file=sys.stderr)
    sys.exit(2)


def compile_flags(debug: int) -> list[str]:
    """build_ffi's flags for a portable release (or MI_DEBUG=debug) build, turned into a TSan build."""
    saved = {k: os.environ.get(k) for k in ("PYMIMALLOC_PORTABLE", "PYMIMALLOC_DEBUG", "PYMIMALLOC_TRACK", "PYMIMALLOC_SECURE")}
    os.environ.update(PYMIMALLOC_PORTABLE="1", PYMIMALLOC_DEBUG=str(debug), PYMIMALLOC_SECURE="0")
    os.environ.pop("PYMIMALLOC_TRACK", None)
    try:
        options = build_ffi.compile_options()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    cflags = [f for f in options["cflags"] if not f.startswith("-O") and f != "-march=native"]  # type: ignore[union-attr]
    defines = [f"-D{name}={value}" for name, value in options["defines"]]  # type: ignore[union-attr]
    # ThreadSanitizer cannot model membarrier(2): the glue's bracket handshake is built with seq_cst fences on
    # both sides instead (csrc/pmi_heap.h, PMI_ASYMMETRIC_FENCE), the same protocol otherwise
    return ["-fsanitize=thread", "-O1", "-g", "-fno-omit-frame-pointer", *cflags, *defines, "-DMI_TSAN=1",
            "-DPMI_ASYMMETRIC_FENCE=0"]


def python_link_flags() -> tuple[str, list[str]]:
    """The include dir and the link flags of this interpreter's libpython (shared if there is one)."""
    include = sysconfig.get_paths()["include"]
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if ldlibrary.endswith(".so") or ".so." in ldlibrary:
        return include, [f"-L{libdir}", f"-Wl,-rpath,{libdir}", f"-l:{ldlibrary}"]
    static = pathlib.Path(sysconfig.get_config_var("LIBPL") or libdir) / (sysconfig.get_config_var("LIBRARY") or "")
    if not static.is_file():
        fail_build(f"no libpython to link (LDLIBRARY={ldlibrary!r}, {static} missing)")
    extra = (sysconfig.get_config_var("LIBS") or "").split() + (sysconfig.get_config_var("SYSLIBS") or "").split()
    return include, [str(static), *extra]


def build(out_dir: pathlib.Path, debug: int, csrc: pathlib.Path, selftest: bool) -> pathlib.Path:
    root, _origin = build_ffi.locate_source()
    cc = os.environ.get("CC", "gcc")
    py_include, py_link = python_link_flags()
    flags = compile_flags(debug) + (["-DPMI_TSAN_SELFTEST"] if selftest else [])
    includes = [f"-I{root / 'include'}", f"-I{root / 'src'}", f"-I{csrc}", f"-I{py_include}"]
    sources = [csrc / "pmi_mimalloc.c", csrc / "pmi_heap.c", HARNESS]
    objects = []
    jobs = []
    for source in sources:
        obj = out_dir / (source.stem + ".o")
        objects.append(obj)
        jobs.append((source, subprocess.Popen([cc, *flags, *includes, "-c", str(source), "-o", str(obj)],
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for source, job in jobs:
        output, _ = job.communicate()
        if job.returncode != 0:
            fail_build(f"compiling {source.name} failed:\n{output}")
        elif output.strip():
            print(output.strip(), file=sys.stderr)
    binary = out_dir / ("pmi_glue_threads" + ("_selftest" if selftest else ""))
    link = [cc, "-fsanitize=thread", *map(str, objects), *py_link, "-lpthread", "-lm", "-o", str(binary)]
    result = subprocess.run(link, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        fail_build(f"linking failed:\n{' '.join(link)}\n{result.stdout}")
    return binary


def tsan_options(log_prefix: pathlib.Path | None = None) -> str:
    options = {
        "halt_on_error": "1",            # the first report ends the run: nothing after it can be trusted
        "exitcode": "66",
        "suppressions": str(SUPPRESSIONS),
        "print_suppressions": "0",
        "detect_deadlocks": "1",         # lock-order inversions between our world/registry/heap/exit/unmap locks
        "second_deadlock_stack": "1",
        "history_size": "4",             # longer per-thread history: fewer "failed to restore the stack"
        "report_signal_unsafe": "0",
    }
    if log_prefix is not None:
        options["log_path"] = str(log_prefix)
    return " ".join(f"{k}={v}" for k, v in options.items())


REPORT_START = re.compile(r"^(WARNING: ThreadSanitizer: .*|==\d+==ERROR: ThreadSanitizer: .*|ThreadSanitizer: CHECK failed.*)$")
FRAME = re.compile(r"^\s+#\d+ (\S+) (\S+)")


def split_reports(text: str) -> list[list[str]]:
    reports: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if REPORT_START.match(line):
            current = [line]
            reports.append(current)
        elif current is not None:
            current.append(line)
            if line.startswith("SUMMARY: ThreadSanitizer") or line.startswith("=================="):
                if line.startswith("SUMMARY"):
                    current = None
    return reports


def classify(report: list[str]) -> str:
    """'glue' if a frame is in csrc/ (our glue), 'harness' if only the harness, else 'mimalloc'."""
    where = set()
    for line in report:
        match = FRAME.match(line)
        if not match:
            continue
        function, location = match.groups()
        if "/csrc/" in location or location.startswith("csrc/") or (function.startswith("pmi_") and "pmi_glue_threads" not in location):
            where.add("glue")
        elif "pmi_glue_threads" in location:
            where.add("harness")
    return "glue" if "glue" in where else "harness" if "harness" in where else "mimalloc"


def run(binary: pathlib.Path, args: list[str], timeout: float) -> tuple[int, str, float]:
    env = dict(os.environ, TSAN_OPTIONS=tsan_options())
    env.pop("PYTHONMALLOC", None)
    start = time.monotonic()
    try:
        proc = subprocess.run([str(binary), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, errors="replace")
        return proc.returncode, proc.stdout, time.monotonic() - start
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return -1, out + f"\ntsan.py: the harness did not finish within {timeout:.0f} s (hang?)\n", time.monotonic() - start


def summarise(reports: list[list[str]]) -> list[str]:
    lines = []
    for report in reports:
        summary = next((l for l in report if l.startswith("SUMMARY")), report[0])
        lines.append(f"[{classify(report)}] {summary}")
    return lines


def main_run(args: argparse.Namespace, binary: pathlib.Path) -> int:
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    harness_args = ["--seconds", str(args.seconds), "--seed", str(seed), *shlex.split(args.harness_args)]
    print(f"tsan.py: running {binary.name} {' '.join(harness_args)} (MI_DEBUG={args.debug})", flush=True)
    code, output, elapsed = run(binary, harness_args, timeout=args.seconds * 4 + 180)
    reports = split_reports(output)
    failures = [l for l in output.splitlines() if "FAIL at line" in l or "tsan.py:" in l]
    sys.stdout.write(output if (reports or failures or code != 0 or args.verbose) else
                     "".join(l + "\n" for l in output.splitlines() if not l.startswith("  ")))
    print(f"tsan.py: harness exit code {code} after {elapsed:.1f} s; {len(reports)} TSan report(s); "
          f"{len(failures)} harness failure line(s); seed {seed}")
    for line in summarise(reports):
        print("  " + line)
    return 0 if code == 0 and not reports and not failures else 1


def selftest(args: argparse.Namespace, binary: pathlib.Path) -> int:
    """Each deliberate race must be reported although tsan.supp is in force."""
    bad = 0
    for variant in SELFTESTS:
        code, output, _ = run(binary, ["--selftest", variant], timeout=120)
        reports = split_reports(output)
        caught = [r for r in reports if r[0].startswith("WARNING: ThreadSanitizer: data race")
                  and any("pmi_selftest_racy_write" in l for l in r)]
        where = sorted({classify(r) for r in caught})
        ok = code != 0 and bool(caught)
        tops = []
        for r in caught[:1]:
            tops = [l.strip() for l in r if re.match(r"^\s+#0 ", l)]
        print(f"tsan.py: selftest {variant!r}: {'reported' if ok else 'NOT REPORTED'} (exit code {code}; "
              f"report involves {', '.join(where) or 'nothing'}; top frames: {' | '.join(tops)})")
        if not ok:
            bad += 1
            sys.stdout.write(output)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="how long the threads run (default 8)")
    parser.add_argument("--seed", type=int, default=None, help="harness seed (default: from the clock, printed)")
    parser.add_argument("--debug", type=int, default=0, choices=range(4), help="MI_DEBUG level of the build (default 0)")
    parser.add_argument("--selftest", action="store_true", help="build with -DPMI_TSAN_SELFTEST and check each deliberate race is reported")
    parser.add_argument("--harness-args", default="", help="extra arguments for the harness, e.g. '--forks 0'")
    parser.add_argument("--csrc", type=pathlib.Path, default=REPO / "csrc", help="glue sources to build (default: the repo's csrc/)")
    parser.add_argument("--keep", type=pathlib.Path, default=None, help="build in this directory and keep it")
    parser.add_argument("--verbose", action="store_true", help="print the harness's counters even when clean")
    args = parser.parse_args()
    if not SUPPRESSIONS.is_file():
        fail_build(f"{SUPPRESSIONS} is missing")
    with tempfile.TemporaryDirectory(prefix="pmi-tsan-") as tmp:
        out_dir = args.keep or pathlib.Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        binary = build(out_dir, args.debug, args.csrc.resolve(), args.selftest)
        print(f"tsan.py: built {binary} in {time.monotonic() - start:.1f} s", flush=True)
        return selftest(args, binary) if args.selftest else main_run(args, binary)


if __name__ == "__main__":
    sys.exit(main())
