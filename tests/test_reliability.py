"""Threads, fork, a C stress kernel, and another mimalloc in the same process."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

import pymimalloc


def test_c_stress_program_finds_no_corruption(tmp_path) -> None:
    """Threads recreated each round, blocks moved between threads, heaps deleted rounds later: tests/c/pmi_stress.c,
    compiled with the flags and defines the module was built with (its debug and secure levels, its sanitizers),
    at -O1, which compiles faster."""
    from test_build import REPO as repo, build_ffi  # the build script, loaded once by test_build

    root, _ = build_ffi.locate_source()
    info = pymimalloc.build_info()
    program = tmp_path / "pmi_stress"
    flags = [flag for flag in info["cflags"] if not flag.startswith(("-flto", "-O"))] + ["-O1"]
    defines = [f"-D{name}={value}" for name, value in info["defines"].items()]
    built = subprocess.run([*build_ffi.compiler_command(), *flags, *defines, f"-I{root / 'include'}",
                            f"-I{root / 'src'}", f"-I{repo / 'csrc'}", str(repo / "tests" / "c" / "pmi_stress.c"),
                            "-o", str(program), "-lpthread"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
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

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(_check(block, tag) for block, tag in handoff)
    handoff.clear()
    for heap in heaps:
        heap.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_uses_heaps_from_before_the_fork() -> None:
    heap = pymimalloc.Heap()
    block = heap.malloc(1000)
    _fill(block, 7)
    array = heap.zeros(1000)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        ok = False
        try:
            ok = _check(block, 7) and not array.any()
            more = heap.malloc(5000)
            _fill(more, 9)
            ok = ok and _check(more, 9) and more in heap
            with pymimalloc.Heap() as fresh:
                ok = ok and _check(_filled(fresh.malloc(64), 3), 3)
            ok = ok and len(list(heap.blocks())) >= 3
            del more, array
            block.free()
            heap.close()
            ok = ok and heap.closed
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the parent is unaffected
    assert _check(block, 7) and not heap.closed and block in heap
    block.free()
    del array
    heap.close()


def _filled(block: pymimalloc.Block, tag: int) -> pymimalloc.Block:
    _fill(block, tag)
    return block


def test_coexists_with_pyarrows_own_mimalloc() -> None:
    pytest.importorskip("pyarrow")
    code = textwrap.dedent("""
        import pyarrow as pa, pymimalloc
        pool = pa.mimalloc_memory_pool()
        arrays = [pa.array(range(100000), memory_pool=pool) for _ in range(5)]
        heap = pymimalloc.Heap()
        blocks = [heap.malloc(n) for n in (10, 1000, 100000)]
        buf = pa.allocate_buffer(1 << 20, memory_pool=pool)
        assert pool.bytes_allocated() > 0 and heap.live_blocks == 3
        arr = heap.zeros(10000)
        print(sum(a.sum().as_py() for a in arrays), pool.backend_name)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=tempfile.gettempdir())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(5 * sum(range(100000))), "mimalloc"]
    assert result.stderr == ""


def test_a_thread_never_gets_a_dead_threads_theap(tmp_path) -> None:
    """mimalloc v3.4.3 copies never-written bytes when a thread's table of heap slots grows past 16
    (threadlocal.c:90 with alloc.c:399-408): a slot a dead thread left there handed its freed theap to
    a new thread. csrc/pmi_mimalloc.c zeroes the table's tail; this C program plants such a slot."""
    import importlib.util
    import pathlib

    repo = pathlib.Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("build_ffi", repo / "build_ffi.py")
    assert spec is not None and spec.loader is not None
    build_ffi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_ffi)
    root, _ = build_ffi.locate_source()
    program = tmp_path / "stale_tls_slot"
    subprocess.run(["cc", "-O1", "-std=gnu11", "-DNDEBUG", f"-I{root / 'include'}", f"-I{root / 'src'}",
                    f"-I{repo / 'csrc'}", str(repo / "tests" / "c" / "stale_tls_slot.c"), "-o", str(program),
                    "-lpthread"], check=True, capture_output=True, text=True)
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
        threads = [threading.Thread(target=worker, args=(round_ * 4 + k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
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
