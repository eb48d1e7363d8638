"""The garbage collector inside every allocation, and finalizers that use pymimalloc: the system that finds what
four reviews found by reading (a NULL item in the context's tuple, a freed numpy capsule, a block entered twice, a
nested removal overwritten), all of them a collection run inside an allocation of a block's ``__enter__`` or
``__exit__`` whose finalizer entered, left or dropped another block. Its first runs found five more: a crash
(CPython's ContextVar set re-entered, gh-148891), two hangs (a finalizer waiting for a lock its own thread held)
and two aborts (cffi's first-use build of a type re-entered).

With ``gc.set_threshold(1)`` every allocation of a container collects, and there is always a garbage cycle with a
finalizer waiting (each finalizer leaves a new one behind), so a finalizer runs inside nearly every container
allocation pymimalloc makes. The main loop and the finalizers draw the same random steps: enter a new block
(as_default, python_objects, numpy_allocator, snapshot, measure, options.override), leave a held one (innermost or
not), drop one still held, enter one a second time, suspend a generator inside a block and drop it, allocate from
the default heap, the main heap and numpy, close a heap, install() and uninstall(), turn the collector off for a
while, fork. A step may only raise what the API documents for that misuse (RuntimeError, ValueError; numpy's
MemoryError from a frozen heap; install() refuses only inside itself, from a finalizer); anything else, an exception
a finalizer could not handle, the collector left off or turned back on, a broken forked child, a hang or a crash
fails. At the end every block is left and every effect must be gone: the default heap is the main heap, no
Python-objects heap or numpy handler of ours is current, options are as they were, the collector is on, install()
works, and every heap is unfrozen, usable and closable.

Arguments: seed, steps. Prints a summary line: how many steps ran in the main loop and in finalizers."""

from __future__ import annotations

import collections
import gc
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import pymimalloc
from pymimalloc import _core

warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)  # 3.12+: fork()

seed, steps = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
get_handler_name = np._core.multiarray.get_handler_name
PURGE_DELAY = pymimalloc.options["purge_delay"]

heaps = [pymimalloc.Heap() for _ in range(3)]
held: list[Any] = []  # blocks entered and not left
made: list[Any] = []  # blocks made (entered or not), to enter again
generators: list[Iterator[None]] = []  # each suspended inside a block
blocks: list[Any] = []
outcomes: collections.Counter[str] = collections.Counter()
unexpected: list[str] = []
armed = False


def new_block() -> Any:
    heap = rng.choice(heaps)
    kind = rng.randrange(6)
    if kind == 0:
        return heap.as_default()
    if kind == 1:
        return heap.python_objects()
    if kind == 2:
        return heap.numpy_allocator()
    if kind == 3:
        return heap.snapshot()
    if kind == 4:
        return pymimalloc.measure()
    return pymimalloc.options.override(purge_delay=rng.choice([0, 10, -1]))


def suspended(block: Any) -> Iterator[None]:
    with block:
        yield


def take(items: list[Any], innermost: bool) -> Any:
    """An item of `items` (the last or any), removed; None if there is none (a finalizer may have taken it)."""
    if not items:
        return None
    index = len(items) - 1 if innermost else rng.randrange(len(items))
    try:
        return items.pop(index)
    except IndexError:  # a finalizer inside the pop's own call took items away
        return None


def step(where: str) -> None:
    choice = rng.randrange(16)
    numpy_step = False
    installing = False
    try:
        if choice <= 2:
            block = new_block()
            made.append(block)
            block.__enter__()
            held.append(block)
        elif choice <= 4:
            block = take(held, innermost=rng.random() < 0.6)
            if block is not None:
                block.__exit__(None, None, None)
        elif choice == 5:
            take(held, innermost=False)  # dropped while held: its deallocation leaves
            take(made, innermost=False)
        elif choice == 6 and made:
            block = rng.choice(made)
            block.__enter__()  # a second entry is refused (RuntimeError)
            held.append(block)
        elif choice == 7:
            generator = suspended(new_block())
            next(generator)
            generators.append(generator)
        elif choice == 8:
            take(generators, innermost=rng.random() < 0.5)  # finalised here: leaves from this context
        elif choice == 9:
            blocks.append(pymimalloc.malloc(rng.randrange(0, 300)))
            numpy_step = True
            blocks.append(np.ones(rng.randrange(1, 200)))
        elif choice == 10:
            take(blocks, innermost=False)
        elif choice == 11:
            index = rng.randrange(len(heaps))
            heaps[index].close()  # RuntimeError while a block holds it
            heaps[index] = pymimalloc.Heap()
        elif choice == 12:
            installing = True  # refused only from inside install() or uninstall() (a finalizer run there)
            pymimalloc.install() if rng.random() < 0.5 else pymimalloc.uninstall()
        elif choice == 13:
            pymimalloc.main_heap().malloc(rng.randrange(0, 100)).free()
        elif choice == 14:
            numpy_step = True
            gc.disable()  # the program turns the collector off for a while: nothing of ours may turn it back on
            try:
                blocks.append(np.zeros(rng.randrange(1, 50)))
                with pymimalloc.main_heap().as_default():
                    blocks.append(pymimalloc.malloc(8))
            finally:
                turned_on = gc.isenabled()
                gc.enable()
            if turned_on:
                unexpected.append(f"{where}: gc.disable() undone")
        elif rng.random() < 0.1:  # a fork (from a finalizer too): the child must start whole, collector on
            pid = os.fork()
            if pid == 0:
                os._exit(0 if gc.isenabled() and pymimalloc.main_heap().malloc(8) is not None else 1)
            if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
                unexpected.append(f"{where}: a forked child started broken")
        outcomes[where] += 1
    except (RuntimeError, ValueError) as error:
        outcomes[f"{where} {type(error).__name__}"] += 1
        if "internal" in str(error).lower() or (installing and where == "main"):
            unexpected.append(f"{where}: {error!r}")
    except MemoryError as error:
        if not numpy_step:  # numpy's own report for a frozen or closed heap
            unexpected.append(f"{where}: {error!r}")
        outcomes[f"{where} MemoryError"] += 1
    except BaseException as error:  # anything else is a defect, reported by the summary, never swallowed
        unexpected.append(f"{where}: {error!r}")


class Finalizer:
    """Garbage in a cycle: its finalizer takes a step and leaves the next one behind."""

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        if armed:
            step("finalizer")
            Finalizer()


def unraisable(info: Any) -> None:
    unexpected.append(f"unraisable in {info.object!r}: {info.exc_value!r}")


sys.unraisablehook = unraisable
armed = True
Finalizer()
gc.set_threshold(1)
for _ in range(steps):
    step("main")
armed = False
gc.set_threshold(700)
pymimalloc.uninstall()

# everything let go, then every effect must be gone
gc.disable()
while held:
    try:
        held.pop().__exit__(None, None, None)
    except RuntimeError:
        pass  # entered a second time: the first entry is being left as well
del made[:], generators[:], blocks[:]
gc.enable()
gc.collect()
problems = list(unexpected)
if not gc.isenabled():
    problems.append("the collector is off")
pymimalloc.install()  # nothing left behind refuses it
pymimalloc.uninstall()
check: list[tuple[str, Callable[[], bool]]] = [
    ("the default heap is the main heap", lambda: pymimalloc.default_heap() is pymimalloc.main_heap()),
    ("no Python-objects heap is current", lambda: _core.python_objects_heap_in_context() is None),
    ("numpy's handler is not ours", lambda: get_handler_name() != pymimalloc.HANDLER_NAME),
    ("purge_delay is as it was", lambda: pymimalloc.options["purge_delay"] == PURGE_DELAY),
]
problems += [what for what, holds in check if not holds()]
for heap in heaps:
    if heap.frozen:
        problems.append(f"{heap!r} is frozen")
    heap.malloc(16).free()
    heap.close()  # RuntimeError if a block still pins it
main_steps = sum(n for key, n in outcomes.items() if key.startswith("main"))
finalizer_steps = sum(n for key, n in outcomes.items() if key.startswith("finalizer"))
print(f"steps: main {main_steps}, finalizers {finalizer_steps}; {dict(sorted(outcomes.items()))}")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("OK")
