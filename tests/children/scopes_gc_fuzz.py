"""The garbage collector inside every allocation, and finalizers that use pymimalloc: the system that finds what
four reviews found by reading (a NULL item in the context's tuple, a freed numpy capsule, a block entered twice, a
nested removal overwritten), all of them a collection run inside an allocation of a block's ``__enter__`` or
``__exit__`` whose finalizer entered, left or dropped another block. Its first runs found five more: a crash
(CPython's ContextVar set re-entered, gh-148891), two hangs (a finalizer waiting for a lock its own thread held)
and two aborts (cffi's first-use build of a type re-entered).

With ``gc.set_threshold(1)`` every allocation of a container collects, and there is always a garbage cycle with a
finalizer waiting (each finalizer leaves a new one behind), so a finalizer runs inside nearly every container
allocation pymimalloc makes (at most FINALIZER_BUDGET finalizer steps per loop step, or a walk of a full heap runs
hundreds). Two threads run at once, the main one and a worker, each with its own seeded random steps (its choices
are the same for a seed; how the two interleave, and so how many finalizer steps each takes, is not). A finalizer
takes a step of the thread the collector runs in (the one that allocated), with that thread's blocks: context
variables are per thread, so each thread has its own blocks, while heaps and allocations are shared. A step may:
enter a new block (as_default, python_objects, numpy_allocator, snapshot, measure, options.override) on a shared
heap, leave a held one (innermost or not), drop one still held, enter one a second time, suspend a generator inside
a block and drop it, or hand it to the other thread to drop (left from another context; never a numpy_allocator
block, whose handler then stays set in the context that entered it, as docs/numpy.md says); allocate from the
default heap, the main heap, numpy and a shared heap directly (a Block or an array), free, realloc or drop what
either thread allocated, walk a shared heap or the main heap, collect, close or destroy a shared heap (which the
other thread may hold, freeze or allocate from), install() and uninstall(), turn the collector off for a while,
fork (from either thread, while the other runs).

A step may only raise what the API documents for that misuse (RuntimeError, ValueError; numpy's MemoryError from a
frozen or closed heap; BufferError from destroy(); install() refuses only inside itself, from a finalizer);
anything else, an exception a finalizer could not handle, the collector left off or turned back on, a broken
forked child, a hang or a crash fails. The collector switch is the process's: the two threads count who turned it
off under one lock, and only the last to finish turns it back on (a forked child may start with it off only while
one of them has it off). A forked child must allocate from the main heap, which no block here holds frozen: a
walk is one call, which fork waits for. At the end each thread leaves its own blocks, and once neither hands the
other anything any more and each dropped what it was handed, checks its own context: the default heap is the main
heap, no Python-objects heap or numpy handler of ours is current. The worker is joined, and then: options are as
they were, the collector is on, install() works, and every heap is unfrozen, usable and closable.

The second thread's first runs found a defect: a fork while another thread walks a heap (``heap.areas()``, one C
call) left the child's copy of that heap frozen for good; a child whose main heap was being walked could not
allocate from it (``pmi_heap_walk`` froze before it took the world lock and thawed after it let it go, and
``pmi_fork_prepare`` waited for neither). The walk now holds the world lock over its freeze (fork_walk_heap.py).

Arguments: seed, steps (each thread's). Prints a summary line: how many steps ran in each thread's loop and in
finalizers (in all, then in each thread)."""

from __future__ import annotations

import collections
import gc
import os
import random
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import pymimalloc
from pymimalloc import _core

warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)  # 3.12+: fork()

seed, steps = int(sys.argv[1]), int(sys.argv[2])
get_handler_name = np._core.multiarray.get_handler_name
PURGE_DELAY = pymimalloc.options["purge_delay"]

heaps = [pymimalloc.Heap() for _ in range(3)]  # shared by both threads
blocks: list[Any] = []  # Blocks and arrays, shared: either thread frees or drops what the other allocated
unexpected: list[str] = []  # list.append is atomic under the GIL
armed = False
# gc.disable() and gc.enable() are the process's: a thread that turned the collector off counts itself in
# `collector_off` under this lock, and only the last one out turns it back on. An RLock: a finalizer run inside
# the section (in the same thread) takes it again.
collector_lock = threading.RLock()
collector_off = 0


class Actor:
    """One thread's state: its random steps, and the blocks it entered (context variables are per thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rng = random.Random(f"{seed} {name}")
        self.held: list[Any] = []  # blocks entered and not left
        self.made: list[Any] = []  # blocks made (entered or not), to enter again
        self.generators: list[Iterator[None]] = []  # each suspended inside a block
        self.outcomes: collections.Counter[str] = collections.Counter()  # this thread's alone: no lost updates
        self.armed = False  # its finalizers take steps
        self.budget = 0  # finalizer steps left in this thread until its loop's next step (see FINALIZER_BUDGET)
        self.other: Actor | None = None
        self.handed: list[Iterator[None]] = []  # suspended in the other thread's blocks, for this one to drop


current = threading.local()  # .actor: the Actor of this thread
# Finalizer steps a thread may take within one step of its loop. A loop step that makes many containers (a walk or
# snapshot of a heap that python_objects() blocks filled with objects) collects once per container, and each
# collection ran a finalizer step: runs of the same seed took from 1 s to 50 s. Past the budget a finalizer still
# runs inside the allocation and leaves the next one behind, but takes no step of pymimalloc.
FINALIZER_BUDGET = 4


def new_block(actor: Actor, numpy_ok: bool = True) -> Any:
    rng = actor.rng
    heap = rng.choice(heaps)
    kind = rng.randrange(6)
    if kind == 0:
        return heap.as_default()
    if kind == 1:
        return heap.python_objects()
    if kind == 2 and numpy_ok:
        return heap.numpy_allocator()
    if kind == 3:
        return heap.snapshot()
    if kind == 4:
        return pymimalloc.measure()
    return pymimalloc.options.override(purge_delay=rng.choice([0, 10, -1]))


def suspended(block: Any) -> Iterator[None]:
    with block:
        yield


def take(rng: random.Random, items: list[Any], innermost: bool) -> Any:
    """An item of `items` (the last or any), removed; None if there is none (a finalizer, or the other thread for
    the shared lists, may have taken it)."""
    if not items:
        return None
    index = len(items) - 1 if innermost else rng.randrange(max(1, len(items)))
    try:
        return items.pop(index)
    except IndexError:  # a finalizer inside the pop's own call, or the other thread, took items away
        return None


def pick(rng: random.Random, items: list[Any]) -> Any:
    """An item of `items`, left in place; None if there is none (the other thread may empty a shared list between
    a check and the choice)."""
    try:
        return rng.choice(items)
    except IndexError:
        return None


def turn_collector_off() -> None:
    global collector_off
    with collector_lock:
        collector_off += 1
        gc.disable()


def turn_collector_back_on() -> bool:
    """Undo turn_collector_off() (the collector comes back on with the last thread's); whether it was on meanwhile
    (something turned it back on)."""
    global collector_off
    with collector_lock:
        turned_on = gc.isenabled()
        if collector_off == 1:  # enabled before the count drops: a child forked between sees it off only counted
            gc.enable()
        collector_off -= 1
    return turned_on


def step(actor: Actor, where: str) -> None:
    rng = actor.rng
    choice = rng.randrange(21)
    numpy_step = False
    installing = False
    destroying = False
    try:
        if choice <= 2:
            block = new_block(actor)
            actor.made.append(block)
            block.__enter__()
            actor.held.append(block)
        elif choice <= 4:
            block = take(rng, actor.held, innermost=rng.random() < 0.6)
            if block is not None:
                block.__exit__(None, None, None)
        elif choice == 5:
            take(rng, actor.held, innermost=False)  # dropped while held: its deallocation leaves
            take(rng, actor.made, innermost=False)
        elif choice == 6 and actor.made:
            block = pick(rng, actor.made)
            if block is not None:
                block.__enter__()  # a second entry is refused (RuntimeError)
                actor.held.append(block)
        elif choice == 7:
            generator = suspended(new_block(actor))
            next(generator)
            actor.generators.append(generator)
        elif choice == 8:
            take(rng, actor.generators, innermost=rng.random() < 0.5)  # finalised here: leaves from this context
        elif choice == 9:
            blocks.append(pymimalloc.malloc(rng.randrange(0, 300)))
            numpy_step = True
            blocks.append(np.ones(rng.randrange(1, 200)))
        elif choice == 10:
            take(rng, blocks, innermost=False)  # maybe the other thread's: a free from another thread
        elif choice == 11:
            index = rng.randrange(len(heaps))
            heap = heaps[index]
            destroying = rng.random() < 0.2
            heap.destroy() if destroying else heap.close()  # RuntimeError while either thread's block holds it
            replacement = pymimalloc.Heap()
            if heaps[index] is heap:  # the other thread (or a finalizer) may have replaced it meanwhile
                heaps[index] = replacement
        elif choice == 12:
            installing = True  # refused only from inside install() or uninstall() (a finalizer run there)
            pymimalloc.install() if rng.random() < 0.5 else pymimalloc.uninstall()
        elif choice == 13:
            pymimalloc.main_heap().malloc(rng.randrange(0, 100)).free()
        elif choice == 14:
            numpy_step = True
            turn_collector_off()  # the program turns the collector off for a while: nothing of ours may turn it back on
            try:
                blocks.append(np.zeros(rng.randrange(1, 50)))
                with pymimalloc.main_heap().as_default():
                    blocks.append(pymimalloc.malloc(8))
            finally:
                turned_on = turn_collector_back_on()
            if turned_on:
                unexpected.append(f"{where}: gc.disable() undone")
        elif choice == 15:
            heap = rng.choice(heaps)  # perhaps closed, frozen or held by the other thread meanwhile
            if rng.random() < 0.5:
                blocks.append(heap.malloc(rng.randrange(0, 300)))  # ValueError closed, RuntimeError frozen
            else:
                numpy_step = True
                blocks.append(heap.zeros(rng.randrange(1, 200)))
        elif choice == 16:
            block = take(rng, blocks, innermost=rng.random() < 0.5)
            if isinstance(block, pymimalloc.Block) and rng.random() < 0.5:
                block.free()  # RuntimeError while its heap is frozen (then it is freed when dropped)
            elif isinstance(block, pymimalloc.Block) and block.heap is not None:
                # ValueError if its heap was closed (or the block freed) meanwhile, RuntimeError while frozen
                blocks.append(block.heap.realloc(block, rng.randrange(0, 600)))
        elif choice == 17:
            heap = rng.choice([*heaps, pymimalloc.main_heap()])
            what = rng.randrange(4)
            if what == 0:
                heap.areas()  # a walk (of the main heap: every thread's calls into mimalloc wait); ValueError if closed
            elif what == 1:
                heap.collect(force=rng.random() < 0.5)  # ValueError if closed meanwhile
            elif what == 2:
                pymimalloc.collect(force=rng.random() < 0.5)
            else:
                item = pick(rng, blocks)
                heap.live_blocks, pymimalloc.heap_of(item) if item is not None else None
        elif choice == 18 and actor.other is not None:
            # suspended in a block of this thread and dropped by the other: left from another context
            generator = suspended(new_block(actor, numpy_ok=False))
            next(generator)  # before it is handed: the other thread may drop what it is handed at once
            actor.other.handed.append(generator)
        elif choice == 19:
            take(rng, actor.handed, innermost=rng.random() < 0.5)  # entered in the other thread, left here
        elif rng.random() < 0.1:  # a fork (from a finalizer too, from either thread): the child must start whole
            # The main heap is never held frozen across steps here (snapshots are of `heaps`), only walked in one
            # call (choice 17), which a fork waits for (docs/reliability.md): the child must be able to use it.
            pid = os.fork()
            if pid == 0:
                status = 4
                try:  # nothing may escape: the child would go on running the fuzz
                    status = 1 if not (gc.isenabled() or collector_off > 0) else 0  # off only while one of ours is
                    pymimalloc.main_heap().malloc(8)
                except RuntimeError:
                    status = 2  # the main heap frozen in the child, for good
                except BaseException:  # noqa: BLE001 (the exit status reports it)
                    status = 3
                finally:
                    os._exit(status)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            if code != 0:
                why = {1: "the collector off", 2: "main_heap().malloc() raised RuntimeError (frozen)"}
                unexpected.append(f"{where}: a forked child started broken: {why.get(code, f'exit {code}')}")
        actor.outcomes[where] += 1
    except (RuntimeError, ValueError) as error:
        actor.outcomes[f"{where} {type(error).__name__}"] += 1
        if "internal" in str(error).lower() or (installing and where == actor.name):  # a loop's install()
            unexpected.append(f"{where}: {error!r}")
    except BufferError as error:  # destroy() while anything from the heap is alive
        if not destroying:
            unexpected.append(f"{where}: {error!r}")
        actor.outcomes[f"{where} BufferError"] += 1
    except MemoryError as error:
        if not numpy_step:  # numpy's own report for a frozen or closed heap
            unexpected.append(f"{where}: {error!r}")
        actor.outcomes[f"{where} MemoryError"] += 1
    except BaseException as error:  # anything else is a defect, reported by the summary, never swallowed
        unexpected.append(f"{where}: {error!r}")


class Finalizer:
    """Garbage in a cycle: its finalizer takes a step of the thread it runs in and leaves the next one behind."""

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        if armed:
            actor = getattr(current, "actor", None)
            if actor is not None and actor.armed and actor.budget > 0:
                actor.budget -= 1
                step(actor, "finalizer" if actor.name == "main" else f"{actor.name} finalizer")
            Finalizer()


# Both loops end here before anyone checks: until the other thread has dropped what this one handed it, those
# blocks are still held in this thread's context. A timeout rather than a hang if one thread died (reported).
ending = threading.Barrier(2, timeout=60)


def leave_all(actor: Actor) -> None:
    """Let go of everything this thread holds, in this thread, then check its own context once the other thread
    let go of what this one handed it."""
    actor.armed = False  # its finalizers take no more steps
    while actor.held:
        try:
            actor.held.pop().__exit__(None, None, None)
        except RuntimeError:
            pass  # entered a second time: the first entry is being left as well
    del actor.made[:], actor.generators[:]
    ending.wait()  # both loops are over (and both threads' finalizers disarmed): nothing is handed any more
    del actor.handed[:]  # entered in the other thread, left here
    ending.wait()
    check: list[tuple[str, Callable[[], bool]]] = [
        ("the default heap is the main heap", lambda: pymimalloc.default_heap() is pymimalloc.main_heap()),
        ("no Python-objects heap is current", lambda: _core.python_objects_heap_in_context() is None),
        ("numpy's handler is not ours", lambda: get_handler_name() != pymimalloc.HANDLER_NAME),
    ]
    unexpected.extend(f"{actor.name}: {what}" for what, holds in check if not holds())


def run(actor: Actor) -> None:
    current.actor = actor
    actor.armed = True
    for _ in range(steps):
        actor.budget = FINALIZER_BUDGET
        step(actor, actor.name)
    leave_all(actor)


def worker_run(actor: Actor) -> None:
    try:
        run(actor)
    except BaseException as error:  # noqa: BLE001 (reported by the summary)
        unexpected.append(f"worker thread: {error!r}")
        ending.abort()


def unraisable(info: Any) -> None:
    unexpected.append(f"unraisable in {info.object!r}: {info.exc_value!r}")


sys.unraisablehook = unraisable
main, worker = Actor("main"), Actor("worker")
main.other, worker.other = worker, main
armed = True
Finalizer()  # one chain for both threads (two doubled the finalizer steps, and the time, for nothing new)
gc.set_threshold(1)
thread = threading.Thread(target=worker_run, args=(worker,), name="fuzz worker")
thread.start()
run(main)
thread.join()
armed = False
gc.set_threshold(700)
pymimalloc.uninstall()

# everything let go, then every effect must be gone
gc.disable()
del blocks[:]
gc.enable()
gc.collect()
problems = list(unexpected)
if not gc.isenabled() or collector_off != 0:
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


def count(actor: Actor, finalizers: bool) -> int:
    """Steps this thread took in its loop, or in finalizers run in it (the outcome keys start with ``where``)."""
    where = ("finalizer" if actor.name == "main" else f"{actor.name} finalizer") if finalizers else actor.name
    keys = [key for key in actor.outcomes if key == where or key.startswith(f"{where} ")]
    return sum(actor.outcomes[key] for key in keys if finalizers or "finalizer" not in key)


# The collector runs finalizers in whichever thread collects, and a thread's allocations do not collect while the
# other thread is inside a collection (CPython's `collecting` flag): one thread often runs nearly all of them.
finalizer_steps = count(main, True) + count(worker, True)
outcomes = dict(sorted((main.outcomes + worker.outcomes).items()))
print(
    f"steps: main {count(main, False)}, worker {count(worker, False)}, finalizers {finalizer_steps}; in the main "
    f"thread {count(main, True)}, in the worker {count(worker, True)}; {outcomes}"
)
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("OK")
