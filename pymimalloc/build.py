"""How the compiled module was built: read from the module itself, never retyped by hand."""

from __future__ import annotations

import copy
from typing import Any

from ._core import BUILD_INFO, MIMALLOC_VERSION

__all__ = ["build_info", "mimalloc_version"]

#: The mimalloc version compiled in, from MI_MALLOC_VERSION (for example "3.4.3").
mimalloc_version: str = MIMALLOC_VERSION


def build_info() -> dict[str, Any]:
    """A new dict describing the build.

    Keys: ``mimalloc_version``; ``mimalloc_source`` (the pinned sdist, or the MIMALLOC_SOURCE path) and
    ``mimalloc_sha256`` (None for a source folder); ``cflags`` and ``defines``; ``native`` and ``portable``
    (whether -march=native was used); ``debug`` (MI_DEBUG level) and ``secure`` (MI_SECURE level);
    ``compiler`` and ``python``.
    """
    return copy.deepcopy(BUILD_INFO)
