"""Process-wide collection: give memory that mimalloc no longer needs back to the OS."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from . import _core
from .stats import ProcessInfo, process_info

__all__ = ["collect", "collecting", "CollectResult"]


def collect(force: bool = False) -> None:
    """Collect abandoned and unused memory in all heaps of this thread and the process (``mi_collect``).

    With ``force=True`` mimalloc also purges memory it would otherwise keep for reuse.
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
