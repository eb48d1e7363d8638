"""How the compiled module was built: read from the module itself, never retyped by hand."""

from __future__ import annotations

import json
from typing import Any

from ._core import BUILD_INFO_JSON, COMPILER, MIMALLOC_VERSION

__all__ = ["build_info", "mimalloc_version"]

#: The mimalloc version compiled in, from MI_MALLOC_VERSION (for example "3.4.3").
mimalloc_version: str = MIMALLOC_VERSION


def build_info() -> dict[str, Any]:
    """A new dict describing the build.

    Keys: ``mimalloc_version``; ``mimalloc_source`` (the pinned sdist, or the MIMALLOC_SOURCE path) and
    ``mimalloc_sha256`` (None for a source folder); ``cflags`` and ``defines``; ``native`` and ``portable``
    (whether -march=native was used: a native build runs only on CPUs like the one that built it, so its
    wheel must never be published); ``target`` (the -march value: ``native``, ``x86-64-v2``, or
    ``default``); ``cpu_features`` (the CPU features those flags let the compiler use, as /proc/cpuinfo
    names them; ``import pymimalloc`` refuses a CPU that lacks one; None if the compiler could not say);
    ``debug`` (MI_DEBUG level) and ``secure`` (MI_SECURE level); ``compiler`` (the compiler
    as it names itself, with its version, such as ``gcc 12.2.0``), ``python`` and ``numpy_headers``.
    """
    return {**json.loads(BUILD_INFO_JSON), "compiler": COMPILER}  # parsed again: every call gets its own
