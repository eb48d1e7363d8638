"""Objects that stand for state of this one process, and the locks that guard such state across ``os.fork()``.

Pure Python: nothing here touches the compiled module (that is ``_core``'s job alone).
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar, NoReturn

__all__ = ["ProcessLocal", "fork_safe_lock"]


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


def fork_safe_lock() -> threading.RLock:
    """A lock that ``os.fork()`` takes first and releases on both sides, so a child never inherits it held
    by a thread that does not exist there (the C glue does the same for its own locks). Reentrant: a fork from
    inside the section that holds it (a finalizer run there) takes it again rather than wait for its own thread
    for good, and the child, whose forking thread holds it, releases it where the parent does. Sections refuse to
    run inside themselves by other means (``_core.call_locked``)."""
    lock = threading.RLock()
    os.register_at_fork(before=lock.acquire, after_in_parent=lock.release, after_in_child=lock.release)
    return lock


