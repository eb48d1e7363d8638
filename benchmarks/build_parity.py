"""Build parity: pymimalloc's cffi build of mimalloc against upstream's own CMake Release build.

    python benchmarks/build_parity.py [--quick] [--repeat 5] [--workdir DIR]

Builds the pinned upstream tree (the one pymimalloc was built from) with CMake's Release configuration,
links the same C kernels (csrc/pmi_bench.c) against it in a small program, and runs both builds side by
side: for every case, rounds alternate between the upstream program and this module, and each figure is
the median of the rounds. Only mimalloc's own allocators are compared (mi_heap_malloc and mi_malloc).

Upstream is configured with its defaults except MI_OVERRIDE=OFF, so that it does not replace malloc in
the program (the kernels' glibc baseline would otherwise be mimalloc too). Needs cmake and a C compiler.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

import pymimalloc
from pymimalloc import _core
from pymimalloc._core import ffi, lib
from pymimalloc.bench.kernels import PATTERNS, plan

REPO = pathlib.Path(__file__).resolve().parent.parent


def _build_script():
    spec = importlib.util.spec_from_file_location("build_ffi", REPO / "build_ffi.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def upstream_tree(workdir: pathlib.Path) -> pathlib.Path:
    """The whole pinned upstream tree (CMakeLists.txt included), from the verified cached sdist."""
    import tarfile

    build_ffi = _build_script()
    tarball = build_ffi._download_sdist(build_ffi._cache_dir())  # cached and sha256-checked
    build_ffi.verify_sha256(tarball, build_ffi.SDIST_SHA256)
    with tarfile.open(tarball) as tar:
        tar.extractall(workdir / "upstream", filter="data")
    return next((workdir / "upstream").glob("*/mimalloc"))


def build_upstream(workdir: pathlib.Path) -> tuple[pathlib.Path, str]:
    root = upstream_tree(workdir)
    build = workdir / "upstream-build"
    configure = ["cmake", "-S", str(root), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 "-DMI_OVERRIDE=OFF", "-DMI_BUILD_SHARED=OFF", "-DMI_BUILD_OBJECT=OFF", "-DMI_BUILD_TESTS=OFF"]
    subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)], check=True,
                   stdout=subprocess.DEVNULL)
    library = next(build.glob("libmimalloc*.a"))
    flags = subprocess.run(["grep", "-h", "C_FLAGS\\|C_DEFINES", *map(str, build.glob("CMakeFiles/mimalloc-static.dir/flags.make"))],
                           capture_output=True, text=True).stdout.strip()
    program = workdir / "parity"
    subprocess.run(["cc", "-O3", "-DNDEBUG", "-DPMI_BENCH_STANDALONE", f"-I{root / 'include'}", f"-I{REPO / 'csrc'}",
                    str(REPO / "benchmarks" / "parity_main.c"), str(REPO / "csrc" / "pmi_bench.c"),
                    str(library), "-lpthread", "-o", str(program)], check=True)
    return program, flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=pathlib.Path)
    args = parser.parse_args()
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="pymimalloc-parity-"))
    program, flags = build_upstream(workdir)
    cases = [c for c in plan(quick=args.quick) if c.pattern != "larson" or c.param == 1]
    allocators = {"mi_heap": lib.PMI_BENCH_HEAP, "mi_malloc": lib.PMI_BENCH_MIMALLOC}
    heap = pymimalloc.Heap()
    seconds = 0.02 if args.quick else 0.05
    jobs = []
    for case in cases:
        for name, code in allocators.items():
            pattern = PATTERNS[case.pattern].code
            probe = (lib.pmi_bench_run_in(pattern, _core.handle(heap), case.size or 64, case.param, 20000, 1)
                     if name == "mi_heap" else
                     lib.pmi_bench_run(pattern, code, ffi.NULL, case.size or 64, case.param, 20000, 1))
            ops = max(20000, int(seconds * 1e9 / max(probe, 0.1)))
            jobs.append((case, name, pattern, code, ops))
    upstream: dict[int, list[float]] = {i: [] for i in range(len(jobs))}
    ours: dict[int, list[float]] = {i: [] for i in range(len(jobs))}
    for round_ in range(args.repeat):
        print(f"round {round_ + 1}/{args.repeat}", file=sys.stderr, flush=True)
        for i, (case, name, pattern, code, ops) in enumerate(jobs):
            line = f"{pattern} {code} {case.size or 64} {case.param} {ops}\n"
            out = subprocess.run([str(program)], input=line, capture_output=True, text=True, check=True).stdout
            upstream[i].append(float(out.split()[0]))
            if name == "mi_heap":
                ours[i].append(lib.pmi_bench_run_in(pattern, _core.handle(heap), case.size or 64, case.param, ops, 1000))
            else:
                ours[i].append(lib.pmi_bench_run(pattern, code, ffi.NULL, case.size or 64, case.param, ops, 1000))
    print("| case | allocator | upstream CMake ns | pymimalloc cffi ns | ratio |")
    print("|---|---|---:|---:|---:|")
    worst = 0.0
    for i, (case, name, *_rest) in enumerate(jobs):
        up, us = statistics.median(upstream[i]), statistics.median(ours[i])
        worst = max(worst, us / up)
        print(f"| {case.label} | {name} | {up:,.1f} | {us:,.1f} | {us / up:.3f} |")
    print(f"\nworst ratio {worst:.3f} (goal <= 1.03); median of {args.repeat} rounds")
    print(f"pymimalloc cflags: {' '.join(pymimalloc.build_info()['cflags'])}")
    print(f"upstream flags.make:\n{flags}")


if __name__ == "__main__":
    main()
