"""Checks of the numbers users pass in: sizes and alignments in bytes.

Pure Python; the one limit it needs from C (``MAX_SIZE``) is read by ``_core`` at import.
"""

from __future__ import annotations

import operator
from typing import SupportsIndex

from ._core import MAX_SIZE

__all__ = ["MAX_SIZE", "as_alignment", "as_int", "as_size"]


def as_size(value: object, what: str = "size") -> int:
    """Validate a size in bytes: an int (or anything with ``__index__``, but not bool), 0..MAX_SIZE.

    Raises TypeError for non-integers, ValueError for negatives, MemoryError above MAX_SIZE.
    """
    size = as_int(value, what)
    if size < 0:
        raise ValueError(f"{what} must not be negative, got {size}")
    if size > MAX_SIZE:
        raise MemoryError(f"{what} of {size} bytes is more than mimalloc can allocate ({MAX_SIZE})")
    return size


def as_alignment(value: object) -> int:
    """Validate an alignment in bytes: a power of two, at least 1. Raises TypeError or ValueError."""
    alignment = as_int(value, "alignment")
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a power of two, got {alignment}")
    if alignment > MAX_SIZE:
        raise ValueError(f"alignment of {alignment} bytes is larger than any allocation can be ({MAX_SIZE} bytes)")
    return alignment


def as_int(value: object, what: str) -> int:
    """``value`` as an int: an int, or anything with ``__index__`` but a bool. Raises TypeError otherwise."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return operator.index(value)


