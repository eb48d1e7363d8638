"""Blocks: memory allocated from a Heap, owned by a Python object.

``Block`` is a CPython type (``csrc/pmi_python.c``) with the buffer protocol: ``memoryview(block)``,
``bytes(block)`` and ``numpy.frombuffer(block)`` work directly, and ``block.view`` is ``memoryview(block)``.
A Block's memory is freed when nothing in Python can reach it any more: every exported buffer holds the
Block itself. ``free()`` gives the memory back at once and refuses, with BufferError, while buffers are
exported (the Block counts them exactly); realloc moves the memory and so refuses in the same case. No
Python object can ever point at freed memory.
"""

from __future__ import annotations

from typing import Any

from . import _core
from ._core import Block
from ._validate import MAX_SIZE, as_size

__all__ = ["Block", "address_of", "good_size", "usable_size"]


def address_of(obj: object) -> int | None:
    """The address a Block, int or buffer stands for (see ``_core.address_of``). Freed Blocks raise ValueError."""
    if isinstance(obj, Block):
        return obj.address
    return _core.address_of(obj)


def usable_size(obj: Block | int | Any) -> int:
    """The usable bytes of the mimalloc block at ``obj`` (a Block, an address, or a buffer).

    For a Block or the start of a block, mimalloc's usable size (``mi_usable_size``). For an address or
    buffer inside a block, the bytes from there to the end of the block's usable part, so a slice
    ``view[1:]`` gives one byte less than its block. Safe for any address, a freed block's included.
    Raises ValueError if the address is not in memory managed by mimalloc, TypeError for other objects.
    """
    if isinstance(obj, Block):
        return obj.usable_size
    address = _core.address_of(obj)
    size = 0 if address is None else _core.usable_size_at(address)
    if size == 0:
        raise ValueError(f"{obj!r} is not an address of a block allocated by mimalloc")
    return int(size)


def good_size(size: int) -> int:
    """The allocation size in bytes mimalloc would actually use for a request of ``size`` bytes.

    Raises MemoryError when that size is more than mimalloc can allocate, as ``malloc`` would."""
    good = _core.good_size(as_size(size))
    if good > MAX_SIZE:
        raise MemoryError(f"size of {size} bytes rounds up to more than mimalloc can allocate ({MAX_SIZE})")
    return good
