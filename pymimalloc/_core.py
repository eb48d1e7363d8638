"""The one boundary to the compiled module: ``ffi``/``lib`` live here and nowhere else.

Everything above this module deals in ints, bytes and Python objects; cdata never leaves the package.
Here are: the checks that run before the compiled module loads, the one table that turns C status codes
into exceptions, pymimalloc's C types (registered into the compiled module below), and the C calls the
other modules make, by concern. Every name without a leading underscore is for the rest of the package;
``tests/test_boundary.py`` checks that no other module (but ``_startup.py``) imports the compiled module.
Checks of user input live in ``_validate.py``, process-local bases and fork-safe locks in ``_process.py``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, NamedTuple, NoReturn, TypeVar

def _refuse_unsafe_environment() -> None:
    """Refuse, before mimalloc starts, what makes it crash while it starts (it reads these at load time)."""
    import os

    for key, value in os.environ.items():  # mimalloc reads its variables whatever their case
        vabits = value.strip()
        if key.upper() == "MIMALLOC_MAX_VABITS" and vabits not in ("", "0"):
            raise ImportError(
                f"{key}={vabits} is not supported by pymimalloc: mimalloc v3.4.3 sizes its page map "
                "from it when it starts, and then fails on memory the OS maps outside it (a segfault in release "
                "builds, an assertion at start in checked ones). Unset it."
            )


_refuse_unsafe_environment()
from ._cpu import refuse_unsupported_cpu  # noqa: E402
refuse_unsupported_cpu()  # before the compiled module loads: built for another CPU, it would crash loading


def _compiled_module_missing() -> ImportError:
    return ImportError(
        f"pymimalloc's compiled module is missing from {os.path.dirname(__file__)}. This usually means "
        "Python imported the source folder of a checkout (the current directory) instead of the installed "
        "package: run from another directory, or install with `pip install -e .` to build it in place."
    )


try:
    from ._mimalloc import ffi, lib
except ModuleNotFoundError as error:  # pragma: no cover - exercised in a subprocess by the tests
    if error.name != __package__ + "._mimalloc":
        raise
    raise _compiled_module_missing() from None


def _realize_types() -> None:
    """Have cffi build every function of ``lib`` and every struct's fields now. It builds each at first use otherwise,
    and that is not reentrant: an allocation inside it may run the garbage collector, and a finalizer that used the
    same function or struct (a walk in a generator's with-block, say) aborted the process on cffi's assertions
    (tests/children/scopes_gc_fuzz.py)."""
    for name in dir(lib):
        getattr(lib, name)
    for name in ffi.list_types()[1]:
        try:
            record = ffi.new(f"struct {name} *")
        except TypeError:  # opaque (mimalloc's and the glue's heaps): no fields
            continue
        dir(record)  # lists the fields, which builds them


_realize_types()


def _refuse_another_versions_module() -> None:
    """ImportError unless the compiled module was built for this version of the Python files.

    They differ when a checkout's version changed since its in-place build, or when Python imported a
    checkout's source folder after PYMIMALLOC_INSTALL loaded the installed compiled module at start
    (pymimalloc/_startup.py). Checked before any other call into the module: its functions may differ too.
    """
    from ._version import __version__

    try:
        built_for = ffi.string(lib.pmi_package_version()).decode()
    except AttributeError:  # built before the module recorded its version
        built_for = "an older version"
    if built_for != __version__:
        compiled = getattr(sys.modules[__package__ + "._mimalloc"], "__file__", "?")
        raise ImportError(
            f"pymimalloc {__version__} (its Python files in {os.path.dirname(__file__)}) found a compiled module "
            f"built for pymimalloc {built_for} ({compiled}). Rebuild it: in a checkout, `pip install -e .` (or "
            "`python setup.py build_ext --inplace`); otherwise reinstall pymimalloc. If Python imported a "
            "checkout's source folder (the current directory) instead of the installed package, run from "
            "another directory."
        )


_refuse_another_versions_module()

#: Largest request mimalloc accepts, in bytes (PTRDIFF_MAX); larger requests raise MemoryError.
MAX_SIZE: Final[int] = 2 ** (8 * ffi.sizeof("size_t") - 1) - 1
_ADDRESS_LIMIT: Final[int] = 2 ** (8 * ffi.sizeof("uintptr_t"))

MIMALLOC_VERSION: Final[str] = "{}.{}.{}".format(
    lib.MI_MALLOC_VERSION // 10000, lib.MI_MALLOC_VERSION // 100 % 100, lib.MI_MALLOC_VERSION % 100
)
#: How the module was built, as JSON (build.py parses it) and the compiler as it names itself
BUILD_INFO_JSON: Final[str] = ffi.string(lib.pmi_build_info()).decode()
COMPILER: Final[str] = ffi.string(lib.pmi_compiler()).decode()


#: The one table from the C glue's status codes (csrc/pmi_heap.h) to exceptions: each code, one meaning.
_STATUS_EXCEPTIONS: Final[dict[int, tuple[type[Exception], str]]] = {
    lib.PMI_ECLOSED: (ValueError, "the heap is closed"),
    lib.PMI_EBUSY: (BufferError, "blocks or arrays allocated from this heap are still in use"),
    lib.PMI_EMAIN: (ValueError, "the main heap cannot be closed"),
    lib.PMI_EFROZEN: (
        RuntimeError,
        "the heap is frozen by a visit or snapshot in progress; it refuses allocations and frees until that ends",
    ),
    lib.PMI_EPINNED: (
        RuntimeError,
        "the heap is in use as a thread's default heap, as numpy's allocator or for a thread's Python objects "
        "(python_objects()); leave that with-block first",
    ),
    lib.PMI_ENOMEM: (MemoryError, "out of memory"),
    lib.PMI_ENOTHOOKED: (
        RuntimeError,
        "mimalloc's hook is not in front of Python's allocator: use heap.python_objects(), which puts it in place",
    ),
    lib.PMI_ETARGETS: (
        RuntimeError,
        "more than 1024 heaps hold Python objects at once (a closed heap, or a finished measure(), counts until "
        "the last of its objects is freed); free those objects first",
    ),
    lib.PMI_EDEBUGHOOKS: (
        RuntimeError,
        "CPython's debug hooks serve its allocator (PYTHONMALLOC=debug, -X dev, or a debug build of Python). "
        "pymimalloc does not put mimalloc under or over them: their checks would miss every new block. Run "
        "without them (for example PYTHONMALLOC=pymalloc) to use mimalloc.",
    ),
}


def _raise(status: int, what: str) -> NoReturn:
    exception, message = _STATUS_EXCEPTIONS.get(
        status, (RuntimeError, f"unexpected status {status} from pymimalloc's C glue")
    )
    raise exception(f"{what}: {message}")


def check(status: int, what: str) -> int:
    """Return ``status`` if it is a success code (>= 0), else raise the exception it stands for."""
    if status < 0:
        _raise(status, what)
    return status


if lib.pmi_init() != lib.PMI_OK:
    raise ImportError(
        "pymimalloc could not initialise: mimalloc has no memory to start with. If "
        "MIMALLOC_DISALLOW_OS_ALLOC is set, also reserve memory for it (MIMALLOC_RESERVE_OS_MEMORY=256MiB)."
    )

# pymimalloc's own CPython types, from csrc/pmi_python.c (added to the compiled module here, once)
_COMPILED_MODULE_ID: Final[int] = id(sys.modules[__package__ + "._mimalloc"])  # what the installers compare
_installed = lib.pmi_python_install(_COMPILED_MODULE_ID)
if _installed == lib.PMI_PYTHON_EINTERPRETER:
    raise ImportError(
        "pymimalloc cannot be imported in a sub-interpreter: its compiled module keeps process-wide state "
        "(mimalloc's heaps, the hook that serves Python's allocator, its C types) that belongs to the main "
        "interpreter. Use pymimalloc from the main interpreter."
    )
if _installed != 0:
    raise ImportError("pymimalloc could not add its C types to its compiled module (see the message above)")
del _installed
from ._mimalloc import (  # noqa: E402  (``X as X``: re-exported to the package)
    SCOPE_DEFAULT as SCOPE_DEFAULT,
    SCOPE_FREEZE as SCOPE_FREEZE,
    SCOPE_NUMPY as SCOPE_NUMPY,
    SCOPE_OBJECTS as SCOPE_OBJECTS,
    Block as Block,
    HeapBase as HeapBase,
    HeapScope as HeapScope,
    OptionsScope as OptionsScope,
    _block_infos,
    _default_heap,
    _heap_forget,
    _heap_object,
    _heap_pointer,
    _python_objects_heap,
    _set_slow_paths,
    _set_status_raiser,
)
from ._mimalloc import _call_locked  # noqa: E402

_T = TypeVar("_T")


def call_locked(lock: threading.RLock, what: str, func: Callable[..., _T], *args: Any) -> _T:
    """``func(*args)`` with ``lock`` held (csrc/pmi_python.c), for sections that must not run in two threads at once.

    Called again from inside the section in the same thread (a finalizer the garbage collector ran there, a signal
    handler, a profile hook), it raises RuntimeError naming ``what``, where ``with lock:`` waited for its own thread
    for good."""
    return _call_locked(lock, what, func, *args)

_set_status_raiser(_raise)  # C raises every status through this one table

# mimalloc serving CPython's allocator domains (csrc/pmi_allocator.c), added to the compiled module the same way
if lib.pmi_allocator_install(_COMPILED_MODULE_ID) != 0:
    raise ImportError("pymimalloc could not add its allocator hook to its compiled module (see the message above)")
from ._mimalloc import _allocator_check, _allocator_hook, _allocator_route, _allocator_state  # noqa: E402

#: CPython's allocator domains, as the bits the C hook takes (PYMEM_DOMAIN_RAW, _MEM, _OBJ).
ALLOCATOR_DOMAINS: Final[dict[str, int]] = {
    "raw": lib.PMI_DOMAIN_RAW, "mem": lib.PMI_DOMAIN_MEM, "obj": lib.PMI_DOMAIN_OBJ,
}


def allocator_hook(mask: int, route: bool = True) -> None:
    """Put mimalloc's hook in front of the domains in ``mask`` (with the GIL held); if ``route``, send their new
    allocations to mimalloc."""
    check(_allocator_hook(mask, route), "install")


def allocator_route(mask: int) -> None:
    """Send new allocations of exactly these hooked domains to mimalloc; the others go to their previous allocator."""
    _allocator_route(mask)


def register_slow_paths(
    allocate: Callable[[Any, object, bool], Block],
    realloc: Callable[[Any, Block, object], Block],
    allocation_failed: Callable[[Any, int], None],
    raise_if_unusable: Callable[[Any], None],
    empty: Callable[..., Any],
    zeros: Callable[..., Any],
) -> None:
    """Give C the Python slow paths of HeapBase's methods (pymimalloc/heap.py, once). Each takes the Heap first."""
    _set_slow_paths(allocate, realloc, allocation_failed, raise_if_unusable, empty, zeros)


def allocator_check(mask: int, what: str) -> None:
    """Raise what :func:`allocator_hook` would refuse for ``mask``, changing nothing."""
    check(_allocator_check(mask), what)


def default_heap_in_context() -> Any:
    """The Heap of the innermost ``as_default()`` block held in this context, or None."""
    return _default_heap()


def python_objects_heap_in_context() -> Any:
    """The Heap this context's new Python objects come from (``python_objects()``), or None."""
    return _python_objects_heap()


def allocator_state() -> tuple[int, int]:
    """(hooked, routed): the domains whose hook is in place, and those whose new allocations mimalloc serves."""
    hooked, routed = _allocator_state()
    return int(hooked), int(routed)


class NumpyFunctions(NamedTuple):
    """pymimalloc's numpy entry points (csrc/pmi_numpy.c), for arrays.py's hot paths."""

    call_with: Callable[..., Any]  #: (handler, func, *args, **kwargs): func's result with the handler set
    new_array: Callable[..., Any]  #: (handler, shape, dtype, order, zero): an array made in C, or NotImplemented


_numpy: NumpyFunctions | None = None  # set once numpy's C API is imported: the one readiness flag in Python


def numpy_functions() -> NumpyFunctions:
    """numpy's C API imported for pymimalloc (once, on first use), and its entry points. ImportError if numpy's
    C API cannot be imported. After the first call, one global load."""
    global _numpy
    if _numpy is None:
        # No lock: a finalizer that used numpy_allocator() waited for the one its own thread held here
        import numpy  # noqa: F401  (numpy must be importable before its C API is)

        from . import _mimalloc

        status = lib.pmi_numpy_install(_COMPILED_MODULE_ID)  # idempotent: two threads (or a finalizer) may both
        if status != 0:
            raise ImportError("pymimalloc could not import numpy's C API (see the message above)")
        functions = NumpyFunctions(_mimalloc._numpy_call_with, _mimalloc._numpy_empty)
        if _numpy is None:
            _numpy = functions
    return _numpy


def address_of(obj: object) -> int | None:
    """The address an int or buffer stands for, or None if it cannot be an address in this process.

    An int is taken as an address (ints outside 0..2**64-1 give None); any object exporting a buffer
    gives the address of its first byte (an empty buffer gives 0). Raises TypeError for anything else.
    """
    if isinstance(obj, int) and not isinstance(obj, bool):
        return int(obj) if 0 <= obj < _ADDRESS_LIMIT else None
    return _buffer_address(obj)


def _buffer_address(obj: object) -> int | None:
    # numpy arrays (also strided views) say where their data starts without needing a contiguous buffer; any object
    # may say so, so the address is checked as an int's is (a review's forged one raised OverflowError)
    interface = getattr(obj, "__array_interface__", None)
    if isinstance(interface, dict) and isinstance(interface.get("data"), tuple):
        address = int(interface["data"][0])
        return address if 0 <= address < _ADDRESS_LIMIT else None
    try:
        pointer = ffi.from_buffer(obj)
    except (TypeError, BufferError, ValueError):
        raise TypeError(
            f"expected an address, a Block or an object exporting a buffer, not {type(obj).__name__}"
        ) from None
    with memoryview(obj) as view:  # type: ignore[arg-type]
        if view.nbytes == 0:
            return 0  # an empty buffer owns no memory, whatever pointer it carries
    return int(ffi.cast("uintptr_t", pointer))


# -------------------------------------------------------------------------------------------------------
# The C calls the other modules make, by concern. They take and return ints, strings and opaque handles
# (cdata that only this module looks into), so no other module needs ``lib`` or ``ffi``.
# -------------------------------------------------------------------------------------------------------

#: tracemalloc domain of every Block (csrc/pmi_heap.h)
TRACEMALLOC_DOMAIN: Final[int] = lib.PMI_TRACEMALLOC_DOMAIN
STATE_OPEN: Final[int] = lib.PMI_STATE_OPEN
STATE_CLOSED: Final[int] = lib.PMI_STATE_CLOSED
STATE_FROZEN: Final[int] = lib.PMI_STATE_FROZEN
CLOSE_AUTO: Final[int] = lib.PMI_CLOSE_AUTO
CLOSE_DESTROY: Final[int] = lib.PMI_CLOSE_DESTROY
ECLOSED: Final[int] = lib.PMI_ECLOSED
EFROZEN: Final[int] = lib.PMI_EFROZEN


def take_text(text: Any, what: str) -> str:
    """Decode a string the C glue allocated, and free it. MemoryError if the glue returned NULL."""
    if not text:
        raise MemoryError(f"mimalloc could not produce {what}")
    try:
        return str(ffi.string(text).decode("utf-8", "replace"))
    finally:
        lib.pmi_text_free(text)


# -- heaps: the Heap object (a HeapBase) owns its pmi_heap_t*; these take the Heap itself ----------------
def _ptr(heap: Any) -> Any:
    """The Heap's ``pmi_heap_t*``, valid while ``heap`` is alive (it owns it). TypeError for a non-Heap,
    ValueError for a Heap that was never initialised."""
    return ffi.cast("pmi_heap_t *", _heap_pointer(heap))


def handle(heap: Any) -> Any:
    """The Heap's ``pmi_heap_t*`` as cdata, for tests and benchmarks that call ``lib`` directly (the one
    sanctioned accessor). Valid while ``heap`` is alive."""
    return _ptr(heap)


def heap_id(heap: Any) -> int:
    """The mi_heap_t address, as heap_of_address reports it."""
    return int(lib.pmi_heap_id(_ptr(heap)))


def heap_of_address(address: int) -> int:
    """The id of the heap holding ``address`` (0 if none)."""
    return int(lib.pmi_heap_of(address))


def heap_object(heap_id: int) -> Any:
    """The Heap standing for the open heap with that id (a heap_of_address answer), or None. Heaps register when
    made, and leave when closed (:func:`heap_forget`) or freed (csrc/pmi_python.c)."""
    return _heap_object(heap_id)


def heap_forget(heap: Any) -> None:
    """The heap was closed: :func:`heap_object` no longer names it."""
    _heap_forget(heap)


def heap_state(heap: Any) -> int:
    return int(lib.pmi_heap_state(_ptr(heap)))


def heap_is_main(heap: Any) -> bool:
    return bool(lib.pmi_heap_is_main(_ptr(heap)))


def heap_live_blocks(heap: Any) -> int:
    return int(lib.pmi_heap_live_blocks(_ptr(heap)))


def heap_live_bytes(heap: Any) -> int:
    return int(lib.pmi_heap_live_bytes(_ptr(heap)))


def heap_peak_bytes(heap: Any) -> int | None:
    """The highest live_bytes the heap reached, or None once a second thread allocated from, freed into or resized
    in it (its threads' own high-water marks then add up to no exact figure; see pmi_heap.h)."""
    h = _ptr(heap)
    return int(lib.pmi_heap_peak_bytes(h)) if lib.pmi_heap_peak_exact(h) else None  # C: never below live_bytes


def heap_total_blocks(heap: Any) -> int:
    """Allocations ever counted in the heap (blocks, array data, Python objects)."""
    return int(lib.pmi_heap_total_blocks(_ptr(heap)))


def heap_huge_bytes(heap: Any) -> int:
    """The live bytes, as :func:`heap_live_bytes` counts them, of the heap's blocks counted above 512 KiB."""
    return int(lib.pmi_heap_huge_bytes(_ptr(heap)))


#: the glue's bracket protocol, by pmi_fence_mode() (see csrc/pmi_heap.h)
FENCE_MODES: Final[dict[int, str]] = {lib.PMI_FENCE_BUILD: "seq_cst (built for TSan)",
                                      lib.PMI_FENCE_SEQ_CST: "seq_cst", lib.PMI_FENCE_MEMBARRIER: "membarrier"}


def fence_mode() -> str:
    """Which bracket handshake this process runs: "membarrier", "seq_cst" (the kernel refused it), or
    "seq_cst (built for TSan)"."""
    return FENCE_MODES[int(lib.pmi_fence_mode())]


def heap_contains(heap: Any, address: int) -> bool:
    return bool(check(lib.pmi_heap_contains(_ptr(heap), address), "contains"))


def heap_close(heap: Any, mode: int) -> int:
    """pmi_heap_close's status, unchecked (closing twice is not an error for every caller)."""
    return int(lib.pmi_heap_close(_ptr(heap), mode))


def heap_collect(heap: Any, force: bool) -> None:
    check(lib.pmi_heap_collect(_ptr(heap), bool(force)), "collect")


def heap_stats_json(heap: Any) -> str | None:
    """The heap's statistics as JSON text, or None if the heap cannot report them now."""
    text = lib.pmi_heap_stats_json(_ptr(heap))
    return take_text(text, "heap statistics") if text else None


def heap_walk(heap: Any, visit_blocks: bool) -> tuple[list[tuple[int, int, int, int, int, int]], list[int], list[int]]:
    """Walk a heap, frozen by the walk itself for its duration (C freezes and thaws it): its areas (address, reserved, committed, used, block_size, full_block_size), and
    the address of every live block (if ``visit_blocks``) with the index of its area."""
    record = ffi.new("pmi_walk_t *")
    try:
        check(lib.pmi_heap_walk(_ptr(heap), visit_blocks, record), "walking the heap")
        areas = [(a.address, a.reserved, a.committed, a.used, a.block_size, a.full_block_size)
                 for a in (record.areas[i] for i in range(record.area_count))]
        count = record.block_count
        if not count:
            return areas, [], []
        return areas, ffi.unpack(record.blocks, count), ffi.unpack(record.block_area, count)
    finally:
        lib.pmi_walk_free(record)


def block_infos(cls: type[Any], areas: list[Any], addresses: list[int], area_indices: list[int]) -> list[list[Any]]:
    """A walk's live blocks as instances of ``cls`` (a class with the slots ``address``, ``size`` and ``area``), one
    list per area: the block at ``addresses[k]`` in ``areas[area_indices[k]]``, of that area's ``block_size``. Made
    in C, as ``object.__new__`` and the slots' setters make them."""
    return _block_infos(cls, areas, addresses, area_indices)


def allocation_failure() -> int:
    """Why the calling thread's last allocation through the glue failed (a status code)."""
    return int(lib.pmi_allocation_failure())


# -- addresses and sizes ----------------------------------------------------------------------------------
def usable_size_at(address: int) -> int:
    """Usable bytes from ``address`` to the end of its mimalloc block, or 0 if it is not in one."""
    return int(lib.pmi_usable_size(address))


def good_size(size: int) -> int:
    return int(lib.mi_good_size(size))


# -- arenas -------------------------------------------------------------------------------------------------
def arena_granularity() -> int:
    return int(lib.pmi_arena_granularity())


def arena_max_size() -> int:
    return int(lib.pmi_arena_max_size())


def arena_min_size() -> int:
    return int(lib.mi_arena_min_size())


def arena_reserve(size: int, commit: bool, allow_large: bool) -> tuple[int, int, int]:
    """Reserve an arena of ``size`` bytes: its id (an int C checks against the arenas it reserved), start
    address and reserved bytes. MemoryError if mimalloc cannot."""
    arena_id = ffi.new("void **")
    error = lib.pmi_arena_reserve(size, bool(commit), bool(allow_large), arena_id)
    if error != 0:
        raise MemoryError(f"mimalloc could not reserve an arena of {size} bytes (error {error})")
    reserved = ffi.new("size_t *")
    address = int(ffi.cast("uintptr_t", lib.mi_arena_area(arena_id[0], reserved)))
    return int(ffi.cast("uintptr_t", arena_id[0])), address, int(reserved[0])


def _arena(arena_id: int) -> Any:
    pointer = ffi.cast("void *", arena_id)
    if not lib.pmi_arena_known(pointer):
        raise ValueError("not an arena pymimalloc reserved")
    return pointer


def arena_contains(arena_id: int, address: int) -> bool:
    return bool(lib.mi_arena_contains(_arena(arena_id), ffi.cast("void *", address)))


# -- options, statistics, collection ----------------------------------------------------------------------
def options_text() -> str:
    """mimalloc's list of options, one ``option '<name>': ...`` line each, in index order."""
    return take_text(lib.pmi_options_text(), "the option list")


def _option(index: int) -> int:
    """An option's index, checked: mimalloc asserts on an index past its last option."""
    if not isinstance(index, int) or not 0 <= index < _OPTION_COUNT:
        raise KeyError(f"no mimalloc option has the index {index!r}")
    return index


def option_get(index: int) -> int:
    return int(lib.mi_option_get(_option(index)))


def option_set(index: int, value: int) -> None:
    lib.mi_option_set(_option(index), value)


_OPTION_COUNT: Final[int] = options_text().count("option '")


def process_info_values() -> list[int]:
    """mi_process_info's eight values, in its order."""
    values = ffi.new("size_t[8]")
    lib.mi_process_info(*(values + i for i in range(8)))
    return [int(v) for v in values]


def stats_json() -> str:
    return take_text(lib.pmi_stats_json(), "statistics")


def stats_text() -> str:
    return take_text(lib.pmi_stats_text(), "statistics")


def refused_options() -> dict[str, tuple[int, str]]:
    """The options pymimalloc refuses (csrc/pmi_heap.c's table): name -> (the only value allowed, why)."""
    return {
        ffi.string(lib.pmi_refused_name(i)).decode(): (int(lib.pmi_refused_safe(i)), ffi.string(lib.pmi_refused_why(i)).decode())
        for i in range(lib.pmi_refused_count())
    }


def option_refusal(index: int, value: int) -> str | None:
    """Why pymimalloc refuses ``value`` for the option at ``index`` (its table, and max_vabits changed after
    mimalloc started), or None: the check OptionsScope makes in C too."""
    why = lib.pmi_option_refusal(_option(index), value)
    return ffi.string(why).decode() if why else None


def refused_report() -> list[str]:
    """One message per refused option mimalloc's start put back (each message is handed out once)."""
    text: str = ffi.string(lib.pmi_refused_report()).decode("utf-8", "replace")
    return text.splitlines()


def stats_reset() -> None:
    lib.pmi_stats_reset()


def collect_all(force: bool) -> None:
    lib.pmi_collect(bool(force))


# -- benchmark kernels (csrc/pmi_bench.h) -----------------------------------------------------------------
#: the allocators the kernels run over, by the name the report uses
BENCH_ALLOCATORS: Final[dict[str, int]] = {
    "heap": lib.PMI_BENCH_HEAP, "pymimalloc": lib.PMI_BENCH_GLUE, "mimalloc": lib.PMI_BENCH_MIMALLOC,
    "pymalloc": lib.PMI_BENCH_PYMALLOC, "glibc": lib.PMI_BENCH_GLIBC,
}
#: the kernels' allocators that run through pymimalloc's glue over a Heap: a Block's ("pymimalloc", one of
#: BENCH_ALLOCATORS), and the allocator hook's under python_objects() ("objects", for benchmarks/glue_pair.py)
_BENCH_GLUES: Final[dict[str, int]] = {"pymimalloc": lib.PMI_BENCH_GLUE, "objects": lib.PMI_BENCH_OBJECTS}
#: the kernels' patterns (csrc/pmi_bench.h's table), by name: their numbers and what one ns figure counts
BENCH_PATTERNS: Final[dict[str, int]] = {
    ffi.string(lib.pmi_bench_pattern(code).name).decode(): code for code in range(lib.PMI_PATTERN_COUNT)
}
BENCH_PATTERN_OPS: Final[dict[str, str]] = {
    ffi.string(lib.pmi_bench_pattern(code).name).decode(): ffi.string(lib.pmi_bench_pattern(code).op).decode()
    for code in range(lib.PMI_PATTERN_COUNT)
}
#: what a kernel's negative result means, as the glue's status of the same meaning (raised by ``check``)
_BENCH_FAILURES: Final[dict[int, int]] = {
    lib.PMI_BENCH_ENOMEM: lib.PMI_ENOMEM, lib.PMI_BENCH_ECLOSED: lib.PMI_ECLOSED, lib.PMI_BENCH_EFROZEN: lib.PMI_EFROZEN,
}


def bench_run(pattern: int, allocator: str, heap: Any, size: int, param: int, ops: int, seed: int, what: str) -> float:
    """One kernel run in C: ns per operation. ``heap`` (a Heap) is used by the "heap" and "pymimalloc" allocators,
    and by "objects" (the glue of Python objects under ``python_objects()``, not one of BENCH_ALLOCATORS).

    Raises MemoryError if the allocator ran out of memory, ValueError if the heap is closed or the kernel
    refused its arguments, RuntimeError if the heap is frozen; ``what`` names the run in the message.
    """
    if allocator == "heap":
        ns = float(lib.pmi_bench_run_in(pattern, _ptr(heap), size, param, ops, seed))
    elif allocator in _BENCH_GLUES:
        ns = float(lib.pmi_bench_run_glue(pattern, _BENCH_GLUES[allocator], _ptr(heap), size, param, ops, seed))
    else:
        ns = float(lib.pmi_bench_run(pattern, BENCH_ALLOCATORS[allocator], ffi.NULL, size, param, ops, seed))
    if ns < 0:
        if ns == lib.PMI_BENCH_EINVAL:
            raise ValueError(f"{what}: the kernel refused its arguments (pattern {pattern}, size {size}, "
                             f"param {param}, ops {ops})")
        check(_BENCH_FAILURES.get(int(ns), int(ns)), what)
    return ns
