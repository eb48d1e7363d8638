"""Process-wide collection: give memory that mimalloc no longer needs back to the OS."""

from __future__ import annotations

from ._core import lib

__all__ = ["collect"]


def collect(force: bool = False) -> None:
    """Collect abandoned and unused memory in all heaps of this thread and the process (``mi_collect``).

    With ``force=True`` mimalloc also purges memory it would otherwise keep for reuse.
    """
    lib.mi_collect(bool(force))
