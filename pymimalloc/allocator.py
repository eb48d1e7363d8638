"""mimalloc as CPython's own allocator, at run time: :func:`install`, :func:`uninstall`, :func:`installed`.

Python objects (``PyObject_Malloc``, the "obj" domain) and most interpreter buffers (``PyMem_Malloc``, "mem")
come from pymalloc, and ``PyMem_RawMalloc`` ("raw") from the C library's malloc. :func:`install` puts
mimalloc in front of them through ``PyMem_SetAllocator``. CPython allows that in a running interpreter only
as a *hook* over the previous allocator, so:

- new allocations of the chosen domains come from one mimalloc heap kept for Python (16-byte aligned, as
  CPython promises; a zero-byte request gets its own 16-byte block);
- ``free``/``realloc`` of memory that mimalloc does not own (allocated before :func:`install`) go to the
  previous allocator, which owns it;
- the hook is never taken out again. :func:`uninstall` sends new allocations back to the previous
  allocator, while mimalloc's blocks, which may be freed at any time later, are still freed by the hook.
  Calling :func:`install` again routes them back to mimalloc.

tracemalloc keeps working: started after :func:`install`, it wraps the hook as it wraps any allocator. If
it is already tracing when a domain is hooked for the first time, it would sit *under* the hook and never
see a new block, so :func:`install` stops it, hooks, and starts it again with the same frame limit; the
traces taken before are lost, and a ``RuntimeWarning`` says so.

CPython's debug hooks (``PYTHONMALLOC=debug``, ``-X dev``, a debug build) are refused with RuntimeError:
mimalloc beneath them would make their checks miss every new block.

This is not a replacement of the process's malloc: the C library's ``malloc``, and every other library,
are untouched.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections.abc import Iterable

# tracemalloc's own functions, from the C module its Python module re-exports them from (as _startup.py does):
# importing tracemalloc.py would load pickle, linecache and tokenize into every program that calls install()
import _tracemalloc

from . import _core
from ._process import fork_safe_lock

__all__ = ["install", "uninstall", "installed", "hooked", "DOMAINS"]

#: The domain names :func:`install` takes, in CPython's order.
DOMAINS: tuple[str, ...] = tuple(_core.ALLOCATOR_DOMAINS)

_lock = fork_safe_lock()


def warn_refused_options() -> None:
    """A RuntimeWarning for each option set through the environment that mimalloc's start put back (C, pmi_init),
    said once. ``import pymimalloc`` calls it: loading the compiled module (``_core``) starts mimalloc."""
    for message in _core.refused_report():
        warnings.warn(message, RuntimeWarning, stacklevel=_caller_stacklevel())


def _mask_of(domains: Iterable[str], raw: bool) -> int:
    if isinstance(domains, str):
        raise TypeError(f"domains must be a collection of names such as ('mem', 'obj'), not the string {domains!r}")
    mask = _core.ALLOCATOR_DOMAINS["raw"] if raw else 0
    for name in domains:
        if not isinstance(name, str):
            raise TypeError(f"a domain is a name ({', '.join(map(repr, DOMAINS))}), not {type(name).__name__}")
        if name not in _core.ALLOCATOR_DOMAINS:
            raise ValueError(f"unknown allocator domain {name!r}: choose from {', '.join(map(repr, DOMAINS))}")
        mask |= _core.ALLOCATOR_DOMAINS[name]
    if mask == 0:
        raise ValueError("install() needs at least one allocator domain")
    return mask


def _names_of(mask: int) -> tuple[str, ...]:
    return tuple(name for name, bit in _core.ALLOCATOR_DOMAINS.items() if mask & bit)


def install(domains: Iterable[str] = ("mem", "obj"), raw: bool = False) -> None:
    """Serve CPython's allocator ``domains`` ("mem", "obj", and "raw" if ``raw``) from mimalloc, from now on.

    Calling it again is harmless; it adds domains not yet served. Any thread may call it. Raises
    ValueError or TypeError for a bad domain, RuntimeError under CPython's debug hooks, MemoryError if
    mimalloc cannot make its heap. Memory allocated before stays with its allocator until it is freed.
    """
    _hook(_mask_of(domains, raw), route=True, who="pymimalloc.install()")


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside pymimalloc, for a warning that names the user's line."""
    package = os.path.dirname(__file__)
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == package:
        frame, level = frame.f_back, level + 1
    return level


def _hook_locked(mask: int, route: bool) -> bool:
    """_hook's work, under its lock (call_locked): whether tracemalloc was restarted."""
    hooked, routed = _core.allocator_state()
    _core.allocator_check(mask, "install")  # refuse before tracemalloc is touched: its traces stay
    restart = bool(mask & ~hooked) and _tracemalloc.is_tracing()
    frames = _tracemalloc.get_traceback_limit()
    try:
        if restart:
            _tracemalloc.stop()
        _core.allocator_hook(mask | (routed if route else 0), route)
    finally:
        if restart:
            _tracemalloc.start(frames)
    return restart


def _hook(mask: int, route: bool, who: str) -> None:
    """Hook the domains in ``mask`` (routing them if ``route``), with tracemalloc restarted above the new hooks."""
    restart = _core.call_locked(_lock, who, _hook_locked, mask, route)
    if restart:
        warnings.warn(
            f"{who} put pymimalloc's allocator hook in place and restarted tracemalloc beneath it, so that it sees "
            "mimalloc's blocks: the traces taken before are gone. Call it (or pymimalloc.install()) before "
            "tracemalloc.start() to keep them.",
            RuntimeWarning,
            stacklevel=_caller_stacklevel(),
        )


def uninstall() -> None:
    """Send new allocations of every domain back to the allocator it had before :func:`install`.

    Blocks mimalloc already gave out stay valid and are freed by mimalloc whenever Python frees them (the
    hook stays in place for that, at the cost of one page-map lookup per free). Harmless if not installed.
    """
    _core.call_locked(_lock, "pymimalloc.uninstall()", _core.allocator_route, 0)


def installed() -> tuple[str, ...]:
    """The domains whose new allocations mimalloc serves now, such as ``('mem', 'obj')``; empty if none."""
    return _names_of(_core.allocator_state()[1])


def hooked() -> tuple[str, ...]:
    """The domains whose hook is in place (it stays after :func:`uninstall`, to free mimalloc's blocks)."""
    return _names_of(_core.allocator_state()[0])


def hook_for_python_objects() -> None:
    """Put the hook in front of the "mem" and "obj" domains (not routing them), for ``Heap.python_objects()``."""
    _hook(_core.ALLOCATOR_DOMAINS["mem"] | _core.ALLOCATOR_DOMAINS["obj"], route=False, who="Heap.python_objects()")
