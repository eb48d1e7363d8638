"""One case of the options sweep (tests/test_options_sweep.py). argv[1] is a JSON spec: mode ("runtime" or
"environment"), name, value, default, refused, starved. The child sets the option (or, for a refused one, checks
the ValueError and that nothing changed), then allocates, walks, closes and frees in this thread and two others.
Then eight more rounds in this thread may not grow the address space by more than 2 MiB (closed heaps leave nothing
mapped; not checked in memory checkers' builds). Prints SWEEP-CHILD-DONE when it finished; every problem goes to
stderr as a PROBLEM line."""

import functools
import json
import sys
import traceback

import pymimalloc
from pymimalloc._core import lib

from builds import memory_checker_build
from threads import run_threads

spec = json.loads(sys.argv[1])
NAME, VALUE, MODE = spec["name"], spec["value"], spec["mode"]

options = pymimalloc.options
problems = []

def problem(message):
    # written at once, so a crash later in the child does not hide it
    problems.append(message)
    sys.stderr.write(f"PROBLEM: {message}\n")
    sys.stderr.flush()

if MODE == "runtime":
    before = options[NAME]
    if spec["refused"]:
        try:
            options[NAME] = VALUE
        except ValueError as exc:
            if NAME not in str(exc):
                problems.append(f"the ValueError does not name the option: {exc}")
        else:
            problems.append(f"options[{NAME!r}] = {VALUE} did not raise ValueError")
        try:
            with options.override(**{NAME: VALUE}):
                problems.append(f"options.override({NAME}={VALUE}) did not raise ValueError")
        except ValueError as exc:
            if NAME not in str(exc):
                problems.append(f"the ValueError of override does not name the option: {exc}")
        if options[NAME] != before:
            problems.append(f"the refused option changed from {before} to {options[NAME]}")
    else:
        options[NAME] = VALUE
        if options[NAME] != VALUE:
            problems.append(f"options[{NAME!r}] reads {options[NAME]} after setting {VALUE}")
else:  # the environment set MIMALLOC_<NAME> before this process started
    expected = spec["default"] if spec["refused"] else VALUE
    for what, got in (("options", options[NAME]), ("options.defaults", options.defaults[NAME])):
        if got != expected:
            problems.append(f"{what}[{NAME!r}] reads {got}, expected {expected}")
if problems:
    if spec["refused"] and options[NAME] != spec["default"]:
        options[NAME] = spec["default"]  # so this failing child exits promptly (destroy_on_exit hangs)
    sys.stderr.write("".join(f"PROBLEM: {p}\n" for p in problems))
    sys.exit(1)

SIZES = (16, 300, 5000, 70000, 1 << 20, 8 << 20)
# eight rounds grew the address space by at most 1 MiB under every option (a review, 2026-12-06, release and checked
# builds, 3.11 and 3.13), and by 6 MiB under disallow_arena_alloc before csrc/pmi_mimalloc.c's pmi_heap_free_os_pages
LEAK_BOUND_KIB = 2048

def fill(block, tag):
    block.view[:] = bytes([tag]) * block.size

def check(block, tag, what):
    with block.view as view:
        data = bytes(view)
    if data != bytes([tag]) * len(data):
        wrong = next(i for i, b in enumerate(data) if b != tag)
        raise AssertionError(f"{what}: byte {wrong} of a {len(data)}-byte block is {data[wrong]}, not {tag}")

def free(block):
    # another thread's walk of the main heap (which holds the blocks of closed heaps) may refuse a
    # free for a moment with the documented RuntimeError; anything else propagates
    for _ in range(10000):
        try:
            return block.free()
        except RuntimeError as exc:
            if "frozen" not in str(exc) and "visit or snapshot" not in str(exc):
                raise
    raise AssertionError("a free was refused 10000 times")

def exercise(seed):
    heap = pymimalloc.Heap()
    blocks = [heap.malloc(n) for n in SIZES]
    blocks.append(heap.malloc_aligned(100, 1 << 20))
    if blocks[-1].address % (1 << 20):
        raise AssertionError(f"malloc_aligned(100, 1 MiB) gave {blocks[-1].address:#x}")
    tags = [(seed * 31 + i) % 255 + 1 for i in range(len(blocks))]
    for block, tag in zip(blocks, tags):
        fill(block, tag)
    array = heap.zeros(100000)
    if array.any():
        raise AssertionError("heap.zeros(100000) is not all zeros")
    array += 3.0
    if not (array in heap and all(block in heap for block in blocks)):
        raise AssertionError("a block or the array is not in its heap")
    addresses = [block.address for block in blocks] + [array.__array_interface__["data"][0]]

    def missing(infos):
        return [hex(a) for a in addresses if not any(i.address <= a < i.address + i.size for i in infos)]

    # a walk that misses a block is reported, but the scenario goes on to the close and the frees
    walked = list(heap.blocks())
    if missing(walked):
        problem(f"heap.blocks() misses {missing(walked)} of {len(addresses)} live allocations")
    with heap.snapshot() as snap:
        if missing(snap.blocks):
            problem(f"heap.snapshot() misses {missing(snap.blocks)} of {len(addresses)} live allocations")
    # close with the 16 B, 5000 B, 1 MiB and 1 MiB-aligned blocks and the array alive
    kept = list(zip(blocks, tags))[::2]
    for block in blocks[1::2]:
        free(block)
    del blocks
    heap.close()
    if not heap.closed:
        raise AssertionError("the heap is not closed after close()")
    for block, tag in kept:
        check(block, tag, "a block that outlived its heap")
        if pymimalloc.heap_of(block) is heap:
            raise AssertionError("heap_of() gives a closed heap")  # it gives the *open* heap holding x
    if not (array == 3.0).all():
        raise AssertionError("an array that outlived its heap changed")
    for block, _ in kept:
        free(block)
    del kept, array
    list(pymimalloc.main_heap().blocks())
    pymimalloc.collect(True)

def run(seed):
    try:
        exercise(seed)
    except MemoryError:
        if not spec["starved"]:
            raise

run(1)
errors = []

def in_thread(seed):
    try:
        run(seed)
    except BaseException as exc:
        errors.append(f"thread {seed}: {traceback.format_exc()}")

run_threads(functools.partial(in_thread, 2), functools.partial(in_thread, 3))
for error in errors:
    problem(error)

def address_space_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmSize"))

# closed heaps leave nothing mapped: eight more rounds may not grow the address space (mimalloc's mi_heap_destroy
# missed the OS pages kept in a live thread's queues: 0.6 MiB a round with disallow_arena_alloc). Not in a memory
# checker's build, whose own allocator maps as it likes (AddressSanitizer's quarantine: 88 MiB over the eight rounds).
if not memory_checker_build():
    run(4)
    before = address_space_kib()
    for seed in range(5, 13):
        run(seed)
    grown = address_space_kib() - before
    if grown > LEAK_BOUND_KIB:
        problem(f"eight rounds of a heap's whole life grew the address space by {grown} KiB")
if lib.pmi_error_count() and not spec["starved"]:
    problem(f"mimalloc reported {lib.pmi_error_count()} error(s), last errno {lib.pmi_error_last()}")
if problems:
    sys.exit(1)
print("SWEEP-CHILD-DONE", json.dumps({"name": NAME, "value": options[NAME]}), flush=True)
