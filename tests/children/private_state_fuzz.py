"""Delete, overwrite and forge every underscored attribute of pymimalloc's public objects, then call every
public method on them. Anything but an exception is a failure: a crash kills this process (the test sees
its signal), and a forged object that still allocates must allocate from itself.

Run by tests/test_private_state.py in a child process; prints the number of forgeries tried."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import pymimalloc

FORGED: list[object] = [None, 0, 1, -1, 2**64, 4096, "x", 1.5, object(), (), np.zeros(2)]


def public_objects() -> Iterator[tuple[str, Callable[[], Any]]]:
    def snapshot() -> pymimalloc.Snapshot:
        return pymimalloc.Heap().snapshot()

    def held_snapshot() -> pymimalloc.Snapshot:
        snap = pymimalloc.Heap().snapshot()
        snap.__enter__()
        return snap

    yield "Heap", pymimalloc.Heap
    yield "Heap in an arena", lambda: pymimalloc.Heap(ARENA)
    yield "uninitialised Heap", lambda: pymimalloc.Heap.__new__(pymimalloc.Heap)
    yield "Block", lambda: pymimalloc.Heap().malloc(32)
    yield "Arena", lambda: ARENA
    yield "Snapshot", snapshot
    yield "held Snapshot", held_snapshot
    yield "HeapScope", lambda: pymimalloc.Heap().as_default()
    yield "Options", lambda: type(pymimalloc.options)()  # a second view of the one set of options


def underscored(obj: object) -> list[str]:
    names = set(dir(obj)) | set(getattr(type(obj), "__slots__", ()))
    return sorted(n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__")))


def exercise(obj: Any, donor: Any) -> None:
    """Every public method and property of ``obj``, each allowed to raise, never to crash."""
    calls: list[Callable[[], Any]] = []
    if isinstance(obj, pymimalloc.Heap):
        def allocate_from_itself() -> None:
            block = obj.malloc(24)
            assert block.heap is obj
            if not obj.closed:
                assert obj.contains(block), "a forged Heap allocated from another heap"
            block.free()

        calls += [
            allocate_from_itself, lambda: obj.zalloc(8), lambda: obj.calloc(2, 4), lambda: obj.malloc_aligned(8, 64),
            lambda: obj.realloc(obj.malloc(8), 64), lambda: obj.realloc(donor.malloc(8), 64),
            lambda: obj._allocate(8, 3, False), lambda: obj._allocate(2**62, 0, True), lambda: obj._open(12345),
            lambda: obj._open_main(), lambda: obj._numpy_handler(),
            lambda: obj.closed, lambda: obj.frozen, lambda: obj.is_main, lambda: obj.live_blocks, lambda: obj.live_bytes,
            lambda: obj.stats(), lambda: obj.areas(), lambda: obj.blocks(), lambda: obj.visit(lambda a, b: True),
            lambda: obj.contains(12345), lambda: obj.empty(3), lambda: obj.zeros((2, 2)), lambda: obj.ones(3),
            lambda: obj.full(2, 7), lambda: obj.asarray([1, 2]), lambda: obj.collect(),
            lambda: repr(obj), lambda: pymimalloc.heap_of(obj.malloc(8)),
        ]
        for make in (obj.as_default, obj.python_objects, obj.numpy_allocator, obj.snapshot):
            def enter_and_leave(make: Callable[[], Any] = make) -> None:
                with make():
                    [str(i) for i in range(10)]
                    np.ones(4)
                    pymimalloc.malloc(8)
            calls.append(enter_and_leave)
        calls += [obj.close, obj.destroy, obj.delete, lambda: obj.malloc(8)]
    elif isinstance(obj, pymimalloc.Block):
        calls += [lambda: obj.address, lambda: obj.size, lambda: obj.usable_size, lambda: bytes(obj), lambda: obj.view,
                  lambda: obj.heap, lambda: repr(obj), lambda: obj.__copy__(), obj.free, lambda: len(obj)]
    elif isinstance(obj, pymimalloc.Arena):
        calls += [lambda: obj.contains(12345), lambda: obj.contains(obj.address), lambda: pymimalloc.Heap(obj).malloc(8),
                  lambda: obj.address, lambda: obj.size, lambda: obj.released, lambda: repr(obj)]
    elif isinstance(obj, pymimalloc.Snapshot):
        calls += [lambda: obj.live_blocks, lambda: obj.live_bytes, lambda: obj.stale, lambda: repr(obj),
                  lambda: obj.__enter__(), lambda: obj.__exit__(None, None, None), lambda: obj.__exit__(None, None, None)]
    elif isinstance(obj, pymimalloc.HeapScope):
        calls += [lambda: obj.__enter__(), lambda: obj.__exit__(None, None, None), lambda: obj.held, lambda: repr(obj)]
    else:
        calls += [lambda: dict(obj), lambda: obj["purge_delay"], lambda: obj.__setitem__("purge_delay", 10),
                  lambda: obj.__setitem__("destroy_on_exit", 1), lambda: repr(obj), lambda: list(obj)]
    for call in calls:
        try:
            call()
        except AssertionError:
            raise  # a forged object misbehaved without raising: the failure this program looks for
        except Exception:  # noqa: BLE001 - any other exception is an acceptable answer to a forged object
            pass


def main() -> None:
    tried = 0
    for name, make in public_objects():
        for attribute in underscored(make()):
            donor_object = make()
            donor = getattr(donor_object, attribute, None)
            for value in itertools.chain([donor], FORGED, ["delete"]):
                obj = make()
                try:
                    if value == "delete":
                        delattr(obj, attribute)
                    else:
                        setattr(obj, attribute, value)
                except Exception:  # noqa: BLE001 - refusing the forgery is the best answer
                    pass
                exercise(obj, pymimalloc.Heap())
                tried += 1
            del donor_object
            gc.collect()
    # the process's own state must be intact after all of it
    with pymimalloc.Heap() as heap:
        block = heap.malloc(64)
        assert pymimalloc.heap_of(block) is heap and heap.blocks()
        block.free()
    assert pymimalloc.default_heap() is pymimalloc.main_heap()
    pymimalloc.options["purge_delay"] = pymimalloc.options.defaults["purge_delay"]
    print(tried)


ARENA = pymimalloc.Arena(pymimalloc.Arena.min_size())
main()
