"""Threads, fork, C stress programs, and another mimalloc in the same process."""
from __future__ import annotations

import functools
import os
import pathlib
import random
import subprocess
import threading
import time

import pytest

import pymimalloc
from childproc import run_program
from threads import run_threads


def _c_program(name: str, directory: pathlib.Path, flags: list[str]) -> pathlib.Path:
    """tests/c/<name>.c compiled against the mimalloc tree the module was built from, with ``flags``."""
    from test_build import REPO as repo, build_ffi  # the build script, loaded once by test_build

    root, _ = build_ffi.locate_source()
    program = directory / name
    built = subprocess.run([*build_ffi.compiler_command(), *flags, f"-I{root / 'include'}", f"-I{root / 'src'}",
                            f"-I{repo / 'csrc'}", str(repo / "tests" / "c" / f"{name}.c"), "-o", str(program),
                            "-lpthread"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return program


def test_c_stress_program_finds_no_corruption(tmp_path: pathlib.Path) -> None:
    """Threads recreated each round, blocks moved between threads, heaps deleted rounds later: tests/c/pmi_stress.c,
    compiled with the flags and defines the module was built with (its debug and secure levels, its sanitizers),
    at -O1, which compiles faster."""
    info = pymimalloc.build_info()
    flags = [flag for flag in info["cflags"] if not flag.startswith(("-flto", "-O"))] + ["-O1"]
    program = _c_program("pmi_stress", tmp_path, flags + [f"-D{name}={value}" for name, value in info["defines"].items()])
    result = subprocess.run([str(program), "8", "12", "20000", "42"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "0 corrupted blocks", result.stdout + result.stderr


def _fill(block: pymimalloc.Block, tag: int) -> None:
    block.view[:] = bytes([tag]) * block.size


def _check(block: pymimalloc.Block, tag: int) -> bool:
    return bytes(block.view) == bytes([tag]) * block.size


def test_eight_python_threads_share_and_replace_heaps() -> None:
    heaps = [pymimalloc.Heap() for _ in range(3)]
    heaps_lock = threading.Lock()
    handoff: list[tuple[pymimalloc.Block, int]] = []
    handoff_lock = threading.Lock()
    errors: list[BaseException] = []
    deadline = time.monotonic() + 3.0

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < deadline:
                with heaps_lock:
                    heap = rng.choice(heaps)
                action = rng.random()
                try:
                    if action < 0.6:
                        block = heap.malloc(rng.choice([8, 100, 3000, 70000]))
                        tag = rng.randrange(1, 255)
                        _fill(block, tag)
                        with handoff_lock:
                            handoff.append((block, tag))
                    elif action < 0.9:
                        with handoff_lock:
                            item = handoff.pop(rng.randrange(len(handoff))) if handoff else None
                        if item is not None:
                            assert _check(*item), "a block changed while another thread held it"
                            item[0].free()
                    elif action < 0.97:
                        heap.visit(lambda area, info: True)
                    else:  # close a heap other threads use, and put a new one in its place
                        with heaps_lock:
                            index = heaps.index(heap) if heap in heaps else 0
                            heaps[index] = pymimalloc.Heap()
                        heap.close()
                except ValueError:
                    pass  # the heap was closed by another thread just now: the documented answer
                except RuntimeError:
                    pass  # another thread is visiting this heap: the documented answer
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_threads(*(functools.partial(worker, n) for n in range(8)))
    assert errors == []
    assert all(_check(block, tag) for block, tag in handoff)
    handoff.clear()
    for heap in heaps:
        heap.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_uses_heaps_from_before_the_fork() -> None:
    result = run_program("fork_heaps_from_before.py", timeout=30)
    assert result.stdout.split() == ["ok"]


def test_coexists_with_pyarrows_own_mimalloc() -> None:
    pytest.importorskip("pyarrow")
    result = run_program("reliability_beside_pyarrow.py", timeout=120, check_mimalloc_errors=False)
    assert result.stdout.split() == [str(5 * sum(range(100000))), "mimalloc"]


def test_a_thread_never_gets_a_dead_threads_theap(tmp_path: pathlib.Path) -> None:
    """mimalloc v3.4.3 copies never-written bytes when a thread's table of heap slots grows past 16
    (threadlocal.c:90 with alloc.c:399-408): a slot a dead thread left there handed its freed theap to
    a new thread. csrc/pmi_mimalloc.c zeroes the table's tail; this C program plants such a slot."""
    program = _c_program("stale_tls_slot", tmp_path, ["-O1", "-std=gnu11", "-DNDEBUG"])
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().endswith("clean"), result.stdout + result.stderr


def test_short_lived_threads_over_many_heaps_allocate_where_asked() -> None:
    # the Python-level shape of the defect above: more than 16 heaps, threads that come and go
    heaps = [pymimalloc.Heap() for _ in range(24)]
    wrong: list[str] = []

    def worker(seed: int) -> None:
        order = random.Random(seed).sample(range(len(heaps)), len(heaps))
        for i in order:
            block = heaps[i].malloc(16 + seed % 300)
            if pymimalloc.heap_of(block) is not heaps[i]:
                wrong.append(f"thread {seed}: a block from heap {i} landed in {pymimalloc.heap_of(block)!r}")
            block.free()

    for round_ in range(40):
        run_threads(*(functools.partial(worker, round_ * 4 + k) for k in range(4)))
    for heap in heaps:
        heap.close()
    assert not wrong, wrong[:5]


def test_a_lookup_just_past_an_over_aligned_block_is_not_its_heap() -> None:
    # v3.4.3 registers an over-aligned page (its block one 64 KiB slice after the page's start) for one slice
    # past the end of its mapping (page-map.c, mi_page_map_get_idx); pymimalloc registers it exactly
    with pymimalloc.Heap() as heap:
        block = heap.malloc_aligned(100, 1 << 20)
        assert pymimalloc.heap_of(block.address) is heap
        assert pymimalloc.heap_of(block.address + (1 << 16)) is not heap  # the next mapping, not this page
        block.free()
