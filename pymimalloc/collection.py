"""Process-wide collection: give memory that mimalloc no longer needs back to the OS."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from . import _core
from .stats import ProcessInfo, process_info

__all__ = ["collect", "collecting", "CollectResult"]


def collect(force: bool = False) -> None:
    """Collect unused memory: this thread's pages in mimalloc's default heap and in the heap that serves Python's
    objects under :func:`install`, then the process's freed memory whose purge delay has passed (``mi_collect``).

    With ``force=True`` mimalloc also frees the empty pages it keeps for the next allocations and purges all freed
    memory now, giving it back to the system. A :class:`Heap`'s pages: :meth:`Heap.collect`.
    """
    _core.collect_all(force)


@dataclasses.dataclass(slots=True)
class CollectResult:
    """What a :func:`collecting` block gave back. ``after`` is None until the block ends."""

    force: bool
    before: ProcessInfo
    after: ProcessInfo | None = None

    @property
    def commit_released(self) -> int:
        """Bytes mimalloc decommitted (negative if the block committed more than it gave back)."""
        return 0 if self.after is None else self.before.current_commit - self.after.current_commit

    @property
    def rss_released(self) -> int:
        """Bytes by which the process's resident memory fell, as the kernel counts it (negative if it grew)."""
        return 0 if self.after is None else self.before.current_rss - self.after.current_rss


@contextlib.contextmanager
def collecting(force: bool = True) -> Iterator[CollectResult]:
    """Collect when the ``with`` block ends, even on error; the result holds commit and RSS before and after."""
    result = CollectResult(bool(force), process_info())
    try:
        yield result
    finally:
        collect(force)
        result.after = process_info()
