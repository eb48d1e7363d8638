"""Run the test suite under AddressSanitizer + UndefinedBehaviorSanitizer and report what involves pymimalloc.

    PYMIMALLOC_PORTABLE=1 PYMIMALLOC_TRACK=asan pip install '.[test]'   # -fsanitize=address,undefined; MI_TRACK_ASAN
    python benchmarks/asan.py [--tests tests/] [-- extra pytest arguments]

The module is compiled with -fsanitize=address (mimalloc poisons its free blocks for ASan: MI_TRACK_ASAN)
and -fsanitize=undefined -fno-sanitize-recover=undefined, but the Python interpreter is not: the runtimes
are loaded first with LD_PRELOAD (gcc's libasan and libubsan, found through $CC, default gcc). The suite runs
with PYTHONMALLOC=malloc, so ASan also checks the interpreter's own allocations around our buffers, and with
detect_leaks=0 (CPython keeps memory at exit). ASan reports go to per-process log files (children that tests
spawn report too, though the tests capture their stderr). UBSan ignores log_path when ASan is loaded as well,
so pytest runs with --capture=sys (C-level writes to fd 2 are not captured) and this script reads UBSan's
"runtime error" reports from pytest's output as it passes them through. A report involves pymimalloc if a
frame is in our module (_mimalloc*.so), in the C glue (pmi_*) or in mimalloc's sources.
Exit status 1 if pytest failed or any report involves pymimalloc; reports elsewhere are listed, not counted.
Run it from outside the source tree, so the installed package is tested. The module cannot be imported
without the preloaded runtimes, so this script only imports it in its children.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def runtime(name: str) -> str:
    """The real path of the compiler's sanitizer runtime (e.g. libasan.so), as gcc -print-file-name finds it."""
    compiler = os.environ.get("CC", "gcc")
    found = subprocess.run([compiler, f"-print-file-name={name}"], stdout=subprocess.PIPE, text=True).stdout.strip()
    if not os.path.isabs(found) or not os.path.exists(found):
        sys.exit(f"asan.py: {compiler} has no {name} (install the compiler's sanitizer runtimes)")
    return os.path.realpath(found)


def ours(report: str) -> bool:
    lines = report.splitlines()
    frames = [line for line in lines if re.match(r"\s+#\d+ ", line)]
    where = " ".join(lines[:1] + frames) if frames else report
    return bool(re.search(r"_mimalloc[.\w]*\.so|\bpmi_\w+|/mimalloc-[\d.]+-\w+/|/csrc/|mimalloc/(src|include)/", where))


def split_reports(text: str) -> list[str]:
    """ASan reports start with '==pid==ERROR:'; UBSan's with 'file:line:col: runtime error:'."""
    starts = [m.start() for m in re.finditer(r"^(==\d+==ERROR: |==\d+==WARNING: |\S+:\d+:\d+: runtime error: )", text, re.M)]
    reports = []
    for a, b in zip(starts, starts[1:] + [len(text)]):
        lines = text[a:b].strip().splitlines()
        if "runtime error:" in lines[0]:  # UBSan: the header and its stack only (pytest's output follows)
            end = 1
            while end < len(lines) and re.match(r"\s+#\d+ ", lines[end]):
                end += 1
            lines = lines[:end]
        reports.append("\n".join(lines))
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    logs = tempfile.mkdtemp(prefix="pmi-asan-")
    asan_options = {
        "detect_leaks": "0",                   # CPython keeps memory at exit by design
        "allocator_may_return_null": "1",      # tests that exhaust memory get MemoryError, not an ASan abort
        "handle_segv": "1",
        "handle_abort": "1",
        "detect_stack_use_after_return": "0",
        "symbolize": "1",
        "log_path": os.path.join(logs, "asan"),
    }
    ubsan_options = {"print_stacktrace": "1", "halt_on_error": "1", "log_path": os.path.join(logs, "ubsan")}
    preload = [runtime("libasan.so"), runtime("libubsan.so")]
    env = dict(os.environ,
               LD_PRELOAD=" ".join(preload + ([os.environ["LD_PRELOAD"]] if os.environ.get("LD_PRELOAD") else [])),
               ASAN_OPTIONS=":".join(f"{k}={v}" for k, v in asan_options.items()),
               UBSAN_OPTIONS=":".join(f"{k}={v}" for k, v in ubsan_options.items()),
               PYTHONMALLOC="malloc")
    probe = subprocess.run([sys.executable, "-c", "import json, pymimalloc; print(json.dumps(pymimalloc.build_info()))"],
                           env=env, cwd=tempfile.gettempdir(), stdout=subprocess.PIPE, text=True)
    if probe.returncode != 0:
        sys.exit("asan.py: pymimalloc does not import under the sanitizers (see above)")
    info = json.loads(probe.stdout)
    if info["defines"].get("MI_TRACK_ASAN") != "1" or "-fsanitize=undefined" not in info["cflags"]:
        print("warning: this build is not PYMIMALLOC_TRACK=asan with UBSan; rebuild it (see the docstring)", file=sys.stderr)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--capture=sys",
               os.path.abspath(args.tests), *args.pytest_args]
    start = time.monotonic()
    proc = subprocess.Popen(command, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    output = []
    assert proc.stdout is not None
    for line in proc.stdout:  # pass it through, and keep it for the UBSan reports
        sys.stdout.write(line)
        sys.stdout.flush()
        output.append(line)
    returncode = proc.wait()
    elapsed = time.monotonic() - start
    reports = [("pytest output", r) for r in split_reports("".join(output)) if "runtime error:" in r.splitlines()[0]]
    for path in sorted(glob.glob(os.path.join(logs, "*"))):
        with open(path, errors="replace") as f:
            reports += [(os.path.basename(path), r) for r in split_reports(f.read())]
    involving = [(p, r) for p, r in reports if ours(r)]
    print(f"pytest exit code {returncode} after {elapsed:.0f} s; ASan/UBSan wrote {len(reports)} report(s); "
          f"{len(involving)} involve pymimalloc")
    for path, report in reports:
        print(f"--- {path} ({'pymimalloc' if ours(report) else 'elsewhere'})")
        print("\n".join(report.splitlines()[:40]))
    shutil.rmtree(logs, ignore_errors=True)
    return 1 if involving or returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
