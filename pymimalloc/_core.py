"""The one boundary to the compiled module: ``ffi``/``lib`` live here and nowhere else.

Everything above this module deals in ints, bytes and Python objects; cdata never leaves the package.
This module also holds the input checks and the single helper that turns C status codes into exceptions.
"""

from __future__ import annotations

import json
import operator
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Final, NamedTuple, NoReturn, SupportsIndex

def _refuse_unsafe_environment() -> None:
    """Refuse, before mimalloc starts, what makes it crash while it starts (it reads these at load time)."""
    import os

    vabits = os.environ.get("MIMALLOC_MAX_VABITS", "").strip()
    if vabits not in ("", "0"):
        raise ImportError(
            f"MIMALLOC_MAX_VABITS={vabits} is not supported by pymimalloc: mimalloc v3.4.3 sizes its page map "
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
# PYMIMALLOC_INSTALL loads the installed compiled module at start (pymimalloc/_startup.py): a source folder
# imported later must not run on it unless it has a compiled module of its own (an in-place build, whose
# name the installed one already took: the same sources, built twice)
_compiled_file = str(getattr(sys.modules[__name__.rpartition(".")[0] + "._mimalloc"], "__file__", ""))
_here = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(os.path.abspath(_compiled_file)) != _here and not any(
    name.startswith("_mimalloc") and name.endswith((".so", ".pyd")) for name in os.listdir(_here)
):
    raise _compiled_module_missing()

__all__ = [
    "Block", "HeapBase", "HeapScope", "SCOPE_DEFAULT", "SCOPE_OBJECTS", "SCOPE_NUMPY", "SCOPE_FREEZE",
    "ffi", "lib", "check", "as_size", "as_alignment", "address_of", "fork_safe_lock", "handle", "MAX_SIZE", "BUILD_INFO",
]

#: Largest request mimalloc accepts, in bytes (PTRDIFF_MAX); larger requests raise MemoryError.
MAX_SIZE: Final[int] = 2 ** (8 * ffi.sizeof("size_t") - 1) - 1
_ADDRESS_LIMIT: Final[int] = 2 ** (8 * ffi.sizeof("uintptr_t"))

MIMALLOC_VERSION: Final[str] = "{}.{}.{}".format(
    lib.MI_MALLOC_VERSION // 10000, lib.MI_MALLOC_VERSION // 100 % 100, lib.MI_MALLOC_VERSION % 100
)
BUILD_INFO: Final[dict[str, Any]] = json.loads(ffi.string(lib.pmi_build_info()).decode())
BUILD_INFO["compiler"] = ffi.string(lib.pmi_compiler()).decode()


def _raise(status: int, what: str) -> NoReturn:
    if status == lib.PMI_ECLOSED:
        raise ValueError(f"{what}: the heap is closed")
    if status == lib.PMI_EBUSY:
        raise BufferError(f"{what}: blocks or arrays allocated from this heap are still in use")
    if status == lib.PMI_EMAIN:
        raise ValueError(f"{what}: the main heap cannot be closed")
    if status == lib.PMI_EFROZEN:
        raise RuntimeError(
            f"{what}: the heap is frozen by a visit or snapshot in progress; it refuses allocations and "
            "frees until that ends"
        )
    if status == lib.PMI_EPINNED:
        raise RuntimeError(
            f"{what}: the heap is in use as a thread's default heap, as numpy's allocator or for a thread's "
            "Python objects (python_objects()); leave that with-block first"
        )
    if status == lib.PMI_ENOMEM:
        raise MemoryError(f"{what}: out of memory")
    if status == lib.PMI_ENOTHOOKED:
        raise RuntimeError(f"{what}: the allocator hook is not in place (an internal error in pymimalloc)")
    if status == lib.PMI_ETARGETS:
        raise RuntimeError(f"{what}: more than 1024 heaps hold Python objects at once; close some first")
    if status == lib.PMI_EDEBUGHOOKS:
        raise RuntimeError(
            f"{what}: CPython's debug hooks serve its allocator (PYTHONMALLOC=debug, -X dev, or a debug build "
            "of Python). pymimalloc does not put mimalloc under or over them: their checks would miss every "
            "new block. Run without them (for example PYTHONMALLOC=pymalloc) to use mimalloc."
        )
    raise RuntimeError(f"{what}: unexpected status {status} from pymimalloc's C glue")


def check(status: int, what: str) -> int:
    """Return ``status`` if it is a success code (>= 0), else raise the exception it stands for."""
    if status < 0:
        _raise(status, what)
    return status


if lib.pmi_init() != lib.PMI_OK:
    raise ImportError(
        "pymimalloc could not initialise: mimalloc could not allocate its first heap. If "
        "MIMALLOC_DISALLOW_OS_ALLOC is set, also reserve memory for it (MIMALLOC_RESERVE_OS_MEMORY=256MiB)."
    )

# pymimalloc's own CPython types, from csrc/pmi_python.c (added to the compiled module here, once)
if lib.pmi_python_install() != 0:
    raise ImportError("pymimalloc could not add its C types to its compiled module (see the message above)")
from ._mimalloc import (  # noqa: E402
    SCOPE_DEFAULT,
    SCOPE_FREEZE,
    SCOPE_NUMPY,
    SCOPE_OBJECTS,
    Block,
    HeapBase,
    HeapScope,
    _default_heap,
    _heap_pointer,
    _python_objects_heap,
    _set_slow_paths,
    _set_status_raiser,
)

_set_status_raiser(_raise)  # C raises every status through this one table

# mimalloc serving CPython's allocator domains (csrc/pmi_allocator.c), added to the compiled module the same way
if lib.pmi_allocator_install() != 0:
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


class ProcessLocal:
    """Base of the objects that stand for state of this process alone: a heap, an arena, a snapshot, the options.

    ``copy.copy``, ``copy.deepcopy`` and ``pickle`` raise TypeError with the class's ``_unshareable_why``, the
    one sentence that says what to do instead. A copy would be a second owner of one mimalloc resource, and
    a pickle would carry addresses that mean nothing in another process.
    """

    __slots__ = ()
    _unshareable_why: ClassVar[str]

    def __copy__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be copied or pickled: {self._unshareable_why}")

    def __deepcopy__(self, memo: dict[int, Any]) -> NoReturn:
        self.__copy__()

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        self.__copy__()


def fork_safe_lock() -> threading.Lock:
    """A lock that ``os.fork()`` takes first and releases on both sides, so a child never inherits it held
    by a thread that does not exist there (the C glue does the same for its own locks)."""
    lock = threading.Lock()
    os.register_at_fork(before=lock.acquire, after_in_parent=lock.release, after_in_child=lock.release)
    return lock


class NumpyFunctions(NamedTuple):
    """pymimalloc's numpy entry points (csrc/pmi_numpy.c), for arrays.py's hot paths."""

    call_with: Callable[..., Any]  #: (handler, func, *args, **kwargs): func's result with the handler set
    new_array: Callable[..., Any]  #: (handler, shape, dtype, order, zero): an array made in C, or NotImplemented


_numpy_install_lock = fork_safe_lock()
_numpy: NumpyFunctions | None = None  # set once numpy's C API is imported: the one readiness flag in Python


def numpy_functions() -> NumpyFunctions:
    """numpy's C API imported for pymimalloc (once, on first use), and its entry points. ImportError if numpy's
    C API cannot be imported. After the first call, one global load."""
    global _numpy
    if _numpy is None:
        with _numpy_install_lock:
            if _numpy is None:
                import numpy  # noqa: F401  (numpy must be importable before its C API is)

                if lib.pmi_numpy_install() != 0:
                    raise ImportError("pymimalloc could not import numpy's C API (see the message above)")
                from . import _mimalloc

                _numpy = NumpyFunctions(_mimalloc._numpy_call_with, _mimalloc._numpy_empty)
    return _numpy


def as_size(value: object, what: str = "size") -> int:
    """Validate a size in bytes: an int (or anything with ``__index__``, but not bool), 0..MAX_SIZE.

    Raises TypeError for non-integers, ValueError for negatives, MemoryError above MAX_SIZE.
    """
    size = _as_int(value, what)
    if size < 0:
        raise ValueError(f"{what} must not be negative, got {size}")
    if size > MAX_SIZE:
        raise MemoryError(f"{what} of {size} bytes is more than mimalloc can allocate ({MAX_SIZE})")
    return size


def as_alignment(value: object) -> int:
    """Validate an alignment in bytes: a power of two, at least 1. Raises TypeError or ValueError."""
    alignment = _as_int(value, "alignment")
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a power of two, got {alignment}")
    if alignment > MAX_SIZE:
        raise ValueError(f"alignment of {alignment} bytes is larger than any allocation can be ({MAX_SIZE} bytes)")
    return alignment


def _as_int(value: object, what: str) -> int:
    """``value`` as an int: an int, or anything with ``__index__`` but a bool. Raises TypeError otherwise."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return operator.index(value)


def address_of(obj: object) -> int | None:
    """The address an int or buffer stands for, or None if it cannot be an address in this process.

    An int is taken as an address (ints outside 0..2**64-1 give None); any object exporting a buffer
    gives the address of its first byte (an empty buffer gives 0). Raises TypeError for anything else.
    """
    if isinstance(obj, int) and not isinstance(obj, bool):
        return int(obj) if 0 <= obj < _ADDRESS_LIMIT else None
    return _buffer_address(obj)


def _buffer_address(obj: object) -> int:
    # numpy arrays (also strided views) say where their data starts without needing a contiguous buffer
    interface = getattr(obj, "__array_interface__", None)
    if isinstance(interface, dict) and isinstance(interface.get("data"), tuple):
        return int(interface["data"][0])
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


def heap_state(heap: Any) -> int:
    return int(lib.pmi_heap_state(_ptr(heap)))


def heap_is_main(heap: Any) -> bool:
    return bool(lib.pmi_heap_is_main(_ptr(heap)))


def heap_live_blocks(heap: Any) -> int:
    return int(lib.pmi_heap_live_blocks(_ptr(heap)))


def heap_live_bytes(heap: Any) -> int:
    return int(lib.pmi_heap_live_bytes(_ptr(heap)))


def heap_peak_bytes(heap: Any) -> int:
    """The highest live_bytes, exact while one thread allocated and freed (else never below the truth)."""
    return int(lib.pmi_heap_peak_bytes(_ptr(heap)))


def heap_total_blocks(heap: Any) -> int:
    """Allocations ever counted in the heap (blocks, array data, Python objects)."""
    return int(lib.pmi_heap_total_blocks(_ptr(heap)))


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
        check(lib.pmi_heap_walk(_ptr(heap), visit_blocks, record), "freezing the heap for a walk")
        areas = [(a.address, a.reserved, a.committed, a.used, a.block_size, a.full_block_size)
                 for a in (record.areas[i] for i in range(record.area_count))]
        count = record.block_count
        if not count:
            return areas, [], []
        return areas, ffi.unpack(record.blocks, count), ffi.unpack(record.block_area, count)
    finally:
        lib.pmi_walk_free(record)


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


def refused_report() -> list[str]:
    """One message per refused option mimalloc's start put back (each message is handed out once)."""
    text: str = ffi.string(lib.pmi_refused_report()).decode("utf-8", "replace")
    return text.splitlines()


def stats_reset() -> None:
    lib.pmi_stats_reset()


def collect_all(force: bool) -> None:
    lib.pmi_collect(bool(force))


# -- benchmark kernels (csrc/pmi_bench.h) -----------------------------------------------------------------
ENOMEM: Final[int] = lib.PMI_ENOMEM
#: the allocators the kernels run over, by the name the report uses
BENCH_ALLOCATORS: Final[dict[str, int]] = {
    "heap": lib.PMI_BENCH_HEAP, "pymimalloc": lib.PMI_BENCH_GLUE, "mimalloc": lib.PMI_BENCH_MIMALLOC,
    "pymalloc": lib.PMI_BENCH_PYMALLOC, "glibc": lib.PMI_BENCH_GLIBC,
}
#: the kernels' patterns, by name
BENCH_PATTERNS: Final[dict[str, int]] = {
    "pair": lib.PMI_PATTERN_PAIR, "batch": lib.PMI_PATTERN_BATCH, "ring": lib.PMI_PATTERN_RING,
    "workset": lib.PMI_PATTERN_WORKSET, "realloc": lib.PMI_PATTERN_REALLOC, "calloc": lib.PMI_PATTERN_CALLOC,
    "memset": lib.PMI_PATTERN_MEMSET, "xthread": lib.PMI_PATTERN_XTHREAD, "larson": lib.PMI_PATTERN_LARSON,
}


def bench_run(pattern: int, allocator: str, heap: Any, size: int, param: int, ops: int, seed: int) -> float:
    """One kernel run in C: ns per operation, or a negative value (-1 out of memory; see pmi_bench.h).
    ``heap`` (a Heap) is used by the "heap" and "pymimalloc" allocators."""
    if allocator == "heap":
        return float(lib.pmi_bench_run_in(pattern, _ptr(heap), size, param, ops, seed))
    if allocator == "pymimalloc":
        return float(lib.pmi_bench_run_glue(pattern, _ptr(heap), size, param, ops, seed))
    return float(lib.pmi_bench_run(pattern, BENCH_ALLOCATORS[allocator], ffi.NULL, size, param, ops, seed))
