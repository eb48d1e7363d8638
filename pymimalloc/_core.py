"""The one boundary to the compiled module: ``ffi``/``lib`` live here and nowhere else.

Everything above this module deals in ints, bytes and Python objects; cdata never leaves the package.
This module also holds the input checks and the single helper that turns C status codes into exceptions.
"""

from __future__ import annotations

import json
import operator
import os
import threading
from typing import Any, ClassVar, Final, NoReturn, SupportsIndex

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

try:
    from ._mimalloc import ffi, lib
except ModuleNotFoundError as error:  # pragma: no cover - exercised in a subprocess by the tests
    if error.name != __package__ + "._mimalloc":
        raise
    import os

    raise ImportError(
        f"pymimalloc's compiled module is missing from {os.path.dirname(__file__)}. This usually means "
        "Python imported the source folder of a checkout (the current directory) instead of the installed "
        "package: run from another directory, or install with `pip install -e .` to build it in place."
    ) from None

__all__ = ["Block", "HeapBase", "ffi", "lib", "check", "as_size", "as_alignment", "address_of", "fork_safe_lock", "MAX_SIZE", "BUILD_INFO"]

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
            f"{what}: the heap is in use as a thread's default heap or as numpy's allocator; "
            "leave that with-block first"
        )
    if status == lib.PMI_ENOMEM:
        raise MemoryError(f"{what}: out of memory")
    if status == lib.PMI_ENOTFROZEN:
        raise RuntimeError(f"{what}: the heap must be frozen first (an internal error in pymimalloc)")
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
from ._mimalloc import Block, HeapBase  # noqa: E402


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


_numpy_install_lock = fork_safe_lock()
_numpy_installed = False


def numpy_entry_points() -> Any:
    """The compiled module with its numpy entry points (``_numpy_*``, csrc/pmi_numpy.c) installed.

    numpy's C API is imported once, on first use. Raises ImportError if it cannot be."""
    global _numpy_installed
    if not _numpy_installed:
        with _numpy_install_lock:
            if not _numpy_installed:
                import numpy  # noqa: F401  (numpy must be importable before its C API is)

                if lib.pmi_numpy_install() != 0:
                    raise ImportError("pymimalloc could not import numpy's C API (see the message above)")
                _numpy_installed = True
    from . import _mimalloc

    return _mimalloc


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
