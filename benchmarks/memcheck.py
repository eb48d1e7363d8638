"""Run the state machine under Valgrind's memcheck and report the errors that involve pymimalloc.

    PYMIMALLOC_TRACK=valgrind pip install '.[test]'     # mimalloc tells Valgrind about its blocks
    python benchmarks/memcheck.py [--examples 5] [--tests tests/test_state_machine.py]

CPython itself produces Valgrind reports that have nothing to do with us, so the run uses
PYTHONMALLOC=malloc and counts only errors with a frame in pymimalloc's module (or in the C glue).
Memory still held at exit ("leaks") is listed apart: heaps alive at exit are kept, by design.
Exit status 1 if there is any. Slow: Valgrind runs Python about 50 times slower.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import pymimalloc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--tests", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                                        "test_state_machine.py"))
    args = parser.parse_args()
    if pymimalloc.build_info()["defines"].get("MI_TRACK_VALGRIND") != "1":
        print("warning: this build has no MI_TRACK_VALGRIND; rebuild with PYMIMALLOC_TRACK=valgrind", file=sys.stderr)
    reports = tempfile.mkdtemp(prefix="pymimalloc-memcheck.")
    report = os.path.join(reports, "report.%p.xml")  # one file per process: the state machine forks
    env = dict(os.environ, PYTHONMALLOC="malloc", PYMIMALLOC_STATE_MACHINE_EXAMPLES=str(args.examples))
    command = ["valgrind", "--tool=memcheck", "--xml=yes", f"--xml-file={report}", "--num-callers=40",
               sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", args.tests]
    result = subprocess.run(command, env=env, cwd=tempfile.gettempdir())
    errors = [e for name in sorted(glob.glob(os.path.join(reports, "report.*.xml")))
              for e in ET.parse(name).getroot().findall("error")]
    ours = []
    leaks = 0
    for error in errors:
        if (error.findtext("kind") or "").startswith("Leak_"):
            leaks += 1  # memory still held at exit: live heaps are allowed to be, by design
            continue
        frames = error.findall(".//frame")
        where = " ".join((f.findtext("obj") or "") + " " + (f.findtext("fn") or "") for f in frames)
        if "_mimalloc" in where or "pmi_" in where:
            ours.append((error.findtext("kind"), (error.findtext("what") or error.findtext("xwhat/text") or "")))
    print(f"pytest exit code {result.returncode}; valgrind reported {len(errors)} record(s) in all "
          f"({leaks} of them memory still held at exit); {len(ours)} memory error(s) involving pymimalloc")
    for kind, what in ours[:20]:
        print(f"  {kind}: {what}")
    return 1 if ours or result.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
