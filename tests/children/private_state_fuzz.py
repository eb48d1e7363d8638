"""Delete, overwrite and forge every underscored attribute of pymimalloc's public objects, then call every
public method on them. Then forge every ContextVar pymimalloc owns, found by introspection (whatever its name or
number), with values made systematically from the real ones, and run every public operation that reads that state
in the forged context. Anything but an exception is a failure: a crash kills this process (the test sees its
signal), a SystemError is C misusing the C API, and a forged object that still allocates must allocate from itself.

Run by tests/test_private_state.py in a child process; prints what it tried: ``attribute forgeries: N``,
``contextvars: N name ...`` (those pymimalloc owns), ``neighbour contextvars: ...`` (set by pymimalloc's operations,
owned by another library: numpy's handler), ``forged NAME: N`` for each var, ``contextvar forgeries: N (...)``.
With PYMIMALLOC_FUZZ_TRACE=path it writes each ContextVar forgery's description to that file before trying it, so
that a crash can be named."""

from __future__ import annotations

import collections
import contextvars
import functools
import gc
import itertools
import os
import sys
import threading
import types
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


def fuzz_attributes() -> int:
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
    return tried


# -- ContextVars ----------------------------------------------------------------------------------------------------
# pymimalloc keeps per-context state in ContextVars, which Python reaches through contextvars.copy_context() (a
# Context's keys are the vars) and sets to anything with ctx.run(var.set, value). They are found here, not named: the
# vars a context gains or changes while pymimalloc's public blocks are entered, and any ContextVar reachable from
# pymimalloc's modules (globals, classes, the compiled module). Each is then set, in a copy of this context, to values
# made from the real ones (the values each var had in many states: blocks nested, held elsewhere, left, dropped, of a
# heap since closed, of another thread), and every public operation that reads the state runs there.

BLOCKS: dict[str, Callable[[pymimalloc.Heap], Any]] = {  # every public with-block that keeps per-context state
    "as_default": lambda heap: heap.as_default(),
    "python_objects": lambda heap: heap.python_objects(),
    "numpy_allocator": lambda heap: heap.numpy_allocator(),
    "measure": lambda heap: pymimalloc.measure(),
}


def ours(obj: object) -> bool:
    """Whether a module, class or function belongs to pymimalloc (by its module's name)."""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    return isinstance(name, str) and (name == "pymimalloc" or name.startswith("pymimalloc."))


def contextvars_of_modules() -> list[contextvars.ContextVar[Any]]:
    """The ContextVars reachable from pymimalloc's modules: their globals, their classes' and functions' contents, the
    compiled module and cffi's lib (through gc.get_referents, a few levels deep, never into another package)."""
    found: dict[int, contextvars.ContextVar[Any]] = {}
    seen: set[int] = set()
    todo = collections.deque((module, 0) for name, module in list(sys.modules.items()) if module is not None
                             and (name == "pymimalloc" or name.startswith("pymimalloc.")))
    leaves = (str, bytes, int, float, complex, bool, type(None))
    while todo and len(seen) < 200_000:
        obj, depth = todo.popleft()  # breadth first: each object is seen first by its shortest path
        if id(obj) in seen or isinstance(obj, leaves):
            continue
        seen.add(id(obj))
        if isinstance(obj, contextvars.ContextVar):
            found[id(obj)] = obj
            continue
        if depth >= 6 or (isinstance(obj, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType))
                          and not ours(obj)):
            continue  # another package's: its ContextVars are its own
        for attribute in ("lib", "ffi"):  # cffi's lib lists its functions only through dir()
            if isinstance(obj, types.ModuleType) and hasattr(obj, attribute):
                todo.append((getattr(obj, attribute), depth + 1))
        todo.extend((ref, depth + 1) for ref in gc.get_referents(obj))
    return list(found.values())


class Specimens:
    """The values every var of a context had in many states (``samples``, each labelled by its state), made by
    pymimalloc's public blocks alone."""

    def __init__(self) -> None:
        self.samples: list[tuple[str, dict[contextvars.ContextVar[Any], Any]]] = []
        self.keep: list[Any] = []  # scopes, heaps and threads that must outlive the fuzz

    def look(self, label: str) -> None:
        self.samples.append((label, dict(contextvars.copy_context().items())))

    def each_block_in_turn(self, heap: pymimalloc.Heap, other: pymimalloc.Heap) -> None:
        for kind, make in BLOCKS.items():
            with make(heap):
                self.look(kind)
        self.look("every block left")
        with heap.as_default(), heap.python_objects(), heap.numpy_allocator(), pymimalloc.measure():
            self.look("all four")
            with other.as_default(), other.python_objects(), other.numpy_allocator(), pymimalloc.measure():
                self.look("all four, nested in all four of another heap")
        for kind, make in BLOCKS.items():  # out of order: the outer block left first
            outer, inner = make(heap), make(other)
            outer.__enter__()
            inner.__enter__()
            outer.__exit__(None, None, None)
            self.look(f"{kind}: outer left before inner")
            inner.__exit__(None, None, None)
            self.keep += [outer, inner]  # left, still alive: their entries name a scope that is done
        with heap.snapshot():
            self.look("snapshot")

    def held(self, heap: pymimalloc.Heap) -> list[Any]:
        scopes = [make(heap) for make in BLOCKS.values()]
        for scope in scopes:
            scope.__enter__()
        self.look("held in another context")
        return scopes

    def of_a_closed_heap(self, heap: pymimalloc.Heap) -> None:
        scopes = [make(heap) for make in BLOCKS.values()]
        for scope in scopes:
            scope.__enter__()
        self.look("of a heap since closed")
        for scope in reversed(scopes):
            scope.__exit__(None, None, None)
        self.keep += scopes

    def dropped_while_held(self, heap: pymimalloc.Heap) -> None:
        scopes = [make(heap) for make in BLOCKS.values()]
        for scope in scopes:
            scope.__enter__()
        self.look("dropped while held")
        del scope, scopes  # deallocated held: each lets its heap go and its entry forget it

    def in_a_thread(self, heap: pymimalloc.Heap, label: str, until: threading.Event | None) -> threading.Thread:
        ready = threading.Event()

        def body() -> None:
            scopes = [make(heap) for make in BLOCKS.values()]
            for scope in scopes:
                scope.__enter__()
            self.look(label)
            ready.set()
            if until is not None:
                until.wait()
            for scope in reversed(scopes):
                scope.__exit__(None, None, None)

        thread = threading.Thread(target=body, daemon=True)  # a failed fuzz exits without releasing it
        thread.start()
        ready.wait()
        return thread


def catalogue() -> tuple[Specimens, dict[str, Any]]:
    """Every state's values, in copies of this context and in threads; returns them with what must be undone."""
    spec = Specimens()
    heap, other, kept, closing, dropping, threaded, finished = (pymimalloc.Heap() for _ in range(7))
    contextvars.copy_context().run(spec.each_block_in_turn, heap, other)
    held_context = contextvars.copy_context()
    held = held_context.run(spec.held, kept)
    extras = {"a Heap": heap, "a heap's numpy handler": heap._numpy_handler(),
              "a closed heap's numpy handler": closing._numpy_handler(), "a held scope": held[0],
              "a left scope": spec.keep[0]}
    contextvars.copy_context().run(spec.of_a_closed_heap, closing)
    closing.close()
    contextvars.copy_context().run(spec.dropped_while_held, dropping)
    dropping.close()
    release = threading.Event()
    holding = spec.in_a_thread(threaded, "held by another thread", release)
    spec.in_a_thread(finished, "of a finished thread", None).join()
    finished.close()
    undo = {"held": held, "held_context": held_context, "release": release, "holding": holding,
            "heaps": [heap, other, kept, threaded], "extras": extras}
    return spec, undo


Values = dict[contextvars.ContextVar[Any], list[tuple[str, Any]]]  # each var's distinct values, labelled


def discover(spec: Specimens, before: dict[contextvars.ContextVar[Any], Any]) -> tuple[Values, Values]:
    """The ContextVars pymimalloc owns and the neighbours its operations set, each with its distinct real values
    (labelled by the first state that showed each). A var is pymimalloc's when its name says so, when its values hold
    pymimalloc's objects, or when pymimalloc's modules reach it; a neighbour when pymimalloc's blocks change it."""
    values: Values = {}
    changed: set[contextvars.ContextVar[Any]] = set()
    unset = object()
    for label, sample in spec.samples:
        for var, value in sample.items():
            if before.get(var, unset) is not value:
                changed.add(var)
            distinct = values.setdefault(var, [])
            if all(value is not seen for _, seen in distinct):
                distinct.append((label, value))
    reachable = contextvars_of_modules()
    for var in reachable:
        values.setdefault(var, [])

    def holds_ours(value: object) -> bool:
        items = value if isinstance(value, (tuple, list)) else (value,)
        return any(ours(type(item)) for item in items)

    by_name = sorted(values, key=lambda var: var.name)  # one order whatever the vars' hashes: runs repeat
    owned = {var: values[var] for var in by_name if var in reachable or (var in changed and (
        "pymimalloc" in var.name or any(holds_ours(value) for _, value in values[var])))}
    neighbours = {var: values[var] for var in by_name if var in changed and var not in owned}
    return owned, neighbours


class TupleSubclass(tuple):  # type: ignore[type-arg]
    """A tuple to C's PyTuple_Check, not to an exact type check."""


class Fresh:
    """Stands, in a forged value, for the entry of a block made for that forgery alone: a block of ``kind`` on a new
    heap, entered in another context. Midway through the forged context's operations the block is left (or dropped)
    and its heap closed, so what the forged value names stops being held while it is set."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"a fresh {self.kind} entry, let go midway"


def made_real(value: Any, owned: Values, victims: list[Any], memo: dict[int, Any]) -> Any:
    """``value`` with each Fresh (in it, or in tuples and lists in it) replaced by a new block's entry; the blocks
    are added to ``victims`` as (context, scope, heap)."""
    if isinstance(value, Live):  # made real when it is forged, from the value then
        return Live(lambda current: made_real(value(current), owned, victims, memo))
    if isinstance(value, Fresh):
        if id(value) not in memo:
            heap, elsewhere = pymimalloc.Heap(), contextvars.Context()
            scope = BLOCKS[value.kind](heap)
            elsewhere.run(scope.__enter__)
            entries = [item for var in owned for item in (elsewhere.get(var) or ()) if ours(type(item))]
            assert entries, f"no ContextVar lists the entry of {value.kind}()"
            victims.append((elsewhere, scope, heap))
            memo[id(value)] = entries[-1]
        return memo[id(value)]
    if isinstance(value, (tuple, list)) and any(isinstance(item, (Fresh, tuple, list)) for item in value):
        items = [made_real(item, owned, victims, memo) for item in value]
        return type(value)(items)
    return value


def let_go(victims: list[Any], n: int) -> None:
    """The forgery's own blocks stop being held, midway: left from their context (or, every other forgery, dropped),
    and their heaps closed."""
    while victims:
        elsewhere, scope, heap = victims.pop()
        if n % 2:
            attempt(lambda: elsewhere.run(scope.__exit__, None, None, None))
        del scope
        attempt(heap.close)


def pool_of_items(owned: Values, neighbours: Values, extras: dict[str, Any]) -> list[tuple[str, Any]]:
    """What a forged tuple may hold: every item of every real value (entries of each list, held, left, dropped, of a
    closed heap, of other threads; numpy handlers), the neighbours' values, FORGED, and pymimalloc's objects."""
    pool = [(f"FORGED[{i}]={value!r}".replace("\n", " "), value) for i, value in enumerate(FORGED)]
    for var, vals in itertools.chain(owned.items(), neighbours.items()):
        for label, value in vals:
            items = value if isinstance(value, tuple) else (value,)
            pool += [(f"item {i} of {var.name} '{label}'", item) for i, item in enumerate(items)]
    pool += list(extras.items())
    pool += [(repr(fresh), fresh) for fresh in map(Fresh, BLOCKS)]
    distinct: list[tuple[str, Any]] = []
    for label, item in pool:
        if all(item is not seen for _, seen in distinct):
            distinct.append((label, item))
    return distinct


def shapes(n: int, pool: list[tuple[str, Any]]) -> Iterator[tuple[str, Callable[[tuple[Any, ...]], Any]]]:
    """The structural mutations of a tuple of ``n`` items, each a label and a function of the tuple: as it is, as a
    list, as a tuple subclass, nested, holding itself, twice over, repeated, reversed, rotated, each item dropped,
    doubled and replaced by each pool item, each pool item inserted first and last."""
    simple: list[tuple[str, Callable[[tuple[Any, ...]], Any]]] = [
        ("", lambda t: t), (" as a list", list), (" as a tuple subclass", TupleSubclass), (" nested", lambda t: (t,)),
        (" with itself last", lambda t: (*t, t)), (" twice over", lambda t: t * 2), (" x 500", lambda t: t * 500),
        (" reversed", lambda t: t[::-1])]
    yield from simple
    for k in range(1, n):
        yield f" rotated by {k}", functools.partial(rotated, k=k)
    for i in range(n):
        yield f" without item {i}", functools.partial(spliced, i=i, end=i + 1, items=())
        yield f" with item {i} twice", functools.partial(spliced, i=i + 1, end=i, items=())
        for label, item in pool:
            yield f" with item {i} replaced by {label}", functools.partial(spliced, i=i, end=i + 1, items=(item,))
    for label, item in pool:
        yield f" with {label} first", functools.partial(spliced, i=0, end=0, items=(item,))
        if n:
            yield f" with {label} last", functools.partial(spliced, i=n, end=n, items=(item,))


def rotated(t: tuple[Any, ...], k: int) -> tuple[Any, ...]:
    return t[k:] + t[:k]


def spliced(t: tuple[Any, ...], i: int, end: int, items: tuple[Any, ...]) -> tuple[Any, ...]:
    """``t[:i] + items + t[end:]``: item i dropped (end = i + 1), doubled (i + 1, end = i), replaced, or inserted."""
    return t[:i] + items + t[end:]


LIVE_ITEMS = 2000  # the most items a Live forgery holds


class Live:
    """A forgery made from the var's value at the moment it is forged (inside the forged context's blocks, their own
    entries), as ``mutate`` makes it."""

    def __init__(self, mutate: Callable[[tuple[Any, ...]], Any]) -> None:
        self.mutate = mutate

    def __call__(self, current: Any) -> Any:
        made = self.mutate(current if isinstance(current, tuple) else ())
        # in_forged_context forges again inside blocks, from the value then: "x 500" of "x 500" of ... grew 500-fold
        # each time, the fuzzer's own tuples, until the kernel killed the process (24 GiB). Kept to LIVE_ITEMS.
        return made[:LIVE_ITEMS] if isinstance(made, (tuple, list)) and len(made) > LIVE_ITEMS else made


def forgeries(var: contextvars.ContextVar[Any], real: list[tuple[str, Any]], pool: list[tuple[str, Any]],
              others: Values) -> Iterator[tuple[str, Any]]:
    """Values for ``var``, made systematically: FORGED and every pool item, bare and alone in a tuple; every other
    var's real values; the structural mutations (shapes) of each of its own real values that is a tuple; every
    ordered pair of pool items, for a var that holds tuples; and the structural mutations of its value at the moment
    it is forged (Live), which inside the forged context's blocks holds their own entries."""
    for label, item in pool:
        yield label, item
        yield f"({label},)", (item,)
    for other, vals in others.items():
        if other is not var:
            yield from ((f"{other.name}'s value '{label}'", value) for label, value in vals)
    tuples = [(label, value) for label, value in real if isinstance(value, tuple)]
    for label, value in tuples:
        yield from ((f"'{label}'{shape}", mutate(value)) for shape, mutate in shapes(len(value), pool))
    if tuples:  # a list of entries: every two items of the pool
        for (first_label, first), (second_label, second) in itertools.product(pool, repeat=2):
            yield f"({first_label}, {second_label})", (first, second)
        longest = max(len(value) for _, value in tuples)
        yield from ((f"its value when forged{shape}", Live(mutate)) for shape, mutate in shapes(longest, pool))


def attempt(call: Callable[[], Any]) -> Any:
    """``call()``; None for any exception but an AssertionError (a check below failed) or a SystemError (C returned
    an error without an exception, or a result with one: the C API misused), which are failures."""
    try:
        return call()
    except (AssertionError, SystemError):
        raise
    except Exception:  # noqa: BLE001 - any other exception is an acceptable answer to a forged value
        return None


def reads(heap: pymimalloc.Heap) -> None:
    """Every public operation that reads the per-context state, each allowed to raise."""
    attempt(pymimalloc.default_heap)
    attempt(lambda: pymimalloc.malloc(24).free())
    attempt(lambda: pymimalloc.heap_of(pymimalloc.malloc(8)))
    attempt(lambda: [str(i) * 5 for i in range(20)])  # new Python objects: the allocator's hook reads the context
    attempt(lambda: pymimalloc.heap_of(np.zeros(64)))
    attempt(lambda: heap.ones(4))  # numpy's constructor with the heap's handler set and put back
    attempt(lambda: heap.empty(8))


def check_inside(kind: str, heap: pymimalloc.Heap, entered: Any) -> None:
    """Inside a block entered over a forged value: the block is the innermost, whatever the forged value held."""
    if kind == "as_default":
        assert pymimalloc.default_heap() is heap, kind
        assert pymimalloc.malloc(16).heap is heap, kind
    elif kind == "python_objects":
        made = [str(i) * 5 for i in range(40)]
        assert sum(pymimalloc.heap_of(id(s)) is heap for s in made) >= 35, kind
    elif kind == "numpy_allocator":
        assert heap.contains(np.zeros(1000)), kind
    else:
        made = [str(i) * 5 for i in range(40)]
        assert entered.blocks >= 35, kind
        del made


def in_forged_context(var: contextvars.ContextVar[Any], forged: Any, heap: pymimalloc.Heap, n: int,
                      victims: list[Any]) -> None:
    """Run in a copy of this context: ``var`` set to ``forged``, then every operation that reads it, every block
    entered over it and left (then the forgery's own blocks let go), and left with it set inside, dropped held,
    collected held, entered or left elsewhere."""
    def forge() -> None:
        attempt(lambda: var.set(forged(var.get(())) if isinstance(forged, Live) else forged))

    forge()
    reads(heap)
    for kind, make in BLOCKS.items():  # entered over the forged value
        scope = make(heap)
        entered = attempt(scope.__enter__)
        if entered is not None:
            check_inside(kind, heap, entered)
        attempt(lambda: scope.__exit__(None, None, None))
        reads(heap)
    let_go(victims, n)
    reads(heap)
    scopes = [make(heap) for make in BLOCKS.values()]  # all four, the value forged again inside them
    for scope in scopes:
        attempt(scope.__enter__)
    forge()
    reads(heap)
    order = scopes[n % 4:] + scopes[:n % 4]
    if n // 4 % 2:
        order.reverse()
    for scope in order:  # left in an order that varies with n
        attempt(lambda: scope.__exit__(None, None, None))
        reads(heap)
    for make in BLOCKS.values():  # dropped while held: deallocation leaves the block
        scope = make(heap)
        attempt(scope.__enter__)
        forge()
        del scope
        reads(heap)
    cycle: list[Any] = [make(heap) for make in BLOCKS.values()]  # held in garbage that the collector frees here
    for scope in cycle:
        attempt(scope.__enter__)
    cycle.append(cycle)
    del cycle, scope
    forge()
    gc.collect(0)
    reads(heap)
    elsewhere = contextvars.Context()  # entered in another context and left here, and the other way round
    for make in BLOCKS.values():
        scope = make(heap)
        attempt(lambda: elsewhere.run(scope.__enter__))
        attempt(lambda: scope.__exit__(None, None, None))
        scope = make(heap)
        attempt(scope.__enter__)
        attempt(lambda: elsewhere.run(scope.__exit__, None, None, None))
    del scope
    reads(heap)
    let_go(victims, n)  # what a Live forgery made since


def forged_context_run(var: contextvars.ContextVar[Any], forged: Any, heap: pymimalloc.Heap, n: int,
                       victims: list[Any]) -> Callable[[], None]:
    """in_forged_context in a copy of this context (made now), in whichever thread calls the result."""
    context = contextvars.copy_context()

    def call() -> None:
        context.run(in_forged_context, var, forged, heap, n, victims)

    return call


class Worker:
    """A thread that runs some forged contexts (a context may run in any thread, once at a time): the hook's
    per-thread cache and a thread's own state then meet values forged in another thread."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], Any] | None] = []
        self.ready = threading.Condition()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            with self.ready:
                self.ready.wait_for(lambda: bool(self.calls))
                call = self.calls.pop()
            if call is None:
                return
            try:
                call()
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                self.error = error
            self.done.set()

    def run(self, call: Callable[[], Any]) -> None:
        self.done.clear()
        with self.ready:
            self.calls.append(call)
            self.ready.notify()
        self.done.wait()
        error, self.error = self.error, None
        if error is not None:
            raise error

    def stop(self) -> None:
        with self.ready:
            self.calls.append(None)
            self.ready.notify()
        self.thread.join()


def fuzz_contextvars() -> tuple[int, Values, Values, int]:
    """Discover the ContextVars, forge each in turn; returns the forgeries tried, the vars and the pool's size.
    For reproducing: PYMIMALLOC_FUZZ_CONTEXTVARS=name,name forges only those vars, PYMIMALLOC_FUZZ_FROM=n skips
    the first n of their forgeries (the order repeats from run to run; the trace numbers them so)."""
    before = dict(contextvars.copy_context().items())
    spec, undo = catalogue()
    owned, neighbours = discover(spec, before)
    pool = pool_of_items(owned, neighbours, undo["extras"])
    only = set(filter(None, os.environ.get("PYMIMALLOC_FUZZ_CONTEXTVARS", "").split(",")))
    skip = int(os.environ.get("PYMIMALLOC_FUZZ_FROM", "0"))
    trace_path = os.environ.get("PYMIMALLOC_FUZZ_TRACE")
    trace = os.open(trace_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if trace_path else None
    heap = pymimalloc.Heap()
    main = pymimalloc.main_heap()
    worker = Worker()
    n = tried = 0
    per_var: dict[str, int] = {}
    unraisable: list[BaseException | None] = []  # a block dropped held reports its failures so (pmi_scope_dealloc)
    sys.unraisablehook = lambda report: unraisable.append(report.exc_value)
    collector_was_on = gc.isenabled()
    # Collections only where this loop runs them: one inside ContextVar.set whose finalizer sets a ContextVar is
    # CPython's own defect (gh-148891), not a forged value's; the loop collects itself, in the forged context too.
    gc.disable()
    try:
        for var in itertools.chain(owned, neighbours):
            if only and var.name not in only:
                continue
            for label, forged in forgeries(var, owned[var] if var in owned else neighbours[var], pool, owned):
                n += 1
                if n <= skip:
                    continue
                if trace is not None:
                    line = f"#{n - 1} {var.name} <- {label}{' (in a worker thread)' if n % 3 == 0 else ''}\n".encode()
                    os.pwrite(trace, line, 0)
                    os.ftruncate(trace, len(line))
                victims: list[Any] = []
                forged = made_real(forged, owned, victims, {})
                call = forged_context_run(var, forged, heap, n, victims)
                if n % 3 == 0:
                    worker.run(call)
                else:
                    call()
                assert pymimalloc.default_heap() is main, label  # this context never saw the forgery
                tried += 1
                per_var[var.name] = per_var.get(var.name, 0) + 1
                del call, forged, victims
                if tried % 500 == 0:
                    gc.collect()
    finally:
        if collector_was_on:
            gc.enable()
        worker.stop()
        sys.unraisablehook = sys.__unraisablehook__
        if trace is not None:
            os.close(trace)
    assert not [error for error in unraisable if isinstance(error, (AssertionError, SystemError))], unraisable
    undo["release"].set()
    undo["holding"].join()
    for scope in undo["held"]:
        undo["held_context"].run(scope.__exit__, None, None, None)
    gc.collect()
    for each in (heap, *undo["heaps"]):
        each.close()  # RuntimeError if a forgery left a block holding it
    for name, count in per_var.items():
        print(f"forged {name}: {count}")
    return tried, owned, neighbours, len(pool)


def main() -> None:
    attribute_forgeries = fuzz_attributes()
    contextvar_forgeries, owned, neighbours, pool = fuzz_contextvars()
    # the process's own state must be intact after all of it
    with pymimalloc.Heap() as heap:
        block = heap.malloc(64)
        assert pymimalloc.heap_of(block) is heap and heap.blocks()
        block.free()
    assert pymimalloc.default_heap() is pymimalloc.main_heap()
    pymimalloc.options["purge_delay"] = pymimalloc.options.defaults["purge_delay"]
    print(f"attribute forgeries: {attribute_forgeries}")
    print(f"contextvars: {len(owned)}", *sorted(var.name for var in owned))
    print("neighbour contextvars:", *sorted(var.name for var in neighbours))
    print(f"contextvar forgeries: {contextvar_forgeries} (items to forge with: {pool})")


ARENA = pymimalloc.Arena(pymimalloc.Arena.min_size())
main()
