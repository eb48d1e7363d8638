"""What the build of pymimalloc under test is, said once for the suite and for its children (tests/ is on their
path: childproc)."""

from __future__ import annotations

import pymimalloc


def memory_checker_build() -> bool:
    """Whether mimalloc was built for a memory checker (MI_TRACK_ASAN, MI_TRACK_VALGRIND: PYMIMALLOC_TRACK). Such a
    build pads and poisons every block, so usable sizes and walks differ from a plain build's; the checker's own
    malloc replaces the C library's; and GCC 12's AddressSanitizer has no fork handlers for its allocator, so a child
    forked while another thread was inside it can wait for good (children/broad_stress.py does not fork there)."""
    return any(name.startswith("MI_TRACK_") for name in pymimalloc.build_info()["defines"])
