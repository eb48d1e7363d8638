from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

import pymimalloc
from builds import memory_checker_build
from pymimalloc._core import lib


@pytest.fixture
def heap() -> Iterator[pymimalloc.Heap]:
    with pymimalloc.Heap() as h:
        yield h


def pytest_configure(config: pytest.Config) -> None:
    # PYMIMALLOC_INSTALL=1 runs the whole suite with mimalloc serving Python's own allocations (CI does, once).
    # An installed wheel's pymimalloc.pth has done it at start; a checkout's in-place build has no .pth.
    from pymimalloc import _startup

    if _startup.domains_from(os.environ.get(_startup.VARIABLE, "")) and not pymimalloc.installed():
        pymimalloc.install()
    config.addinivalue_line("markers", "mimalloc_errors: the test makes mimalloc report errors on purpose (out of memory)")
    config.addinivalue_line(
        "markers",
        "exact_block_sizes: the test asserts mimalloc's unpadded block sizes, which a memory-checker build changes",
    )
    config.addinivalue_line(
        "markers",
        "c_library_memory: the test measures the C library's malloc, which a memory checker replaces with its own",
    )


# MI_TRACK_ASAN / MI_TRACK_VALGRIND pad and poison every block, so usable sizes and walks differ from a plain
# build; tests that assert the plain sizes run in every other build (CI's release and checked runs)
_MEMORY_CHECKER_BUILD = memory_checker_build()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _MEMORY_CHECKER_BUILD:
        return
    skip = pytest.mark.skip(reason="memory-checker build: mimalloc pads every block")
    # AddressSanitizer's malloc keeps freed blocks in a quarantine (256 MiB) and never remaps
    skip_c_library = pytest.mark.skip(reason="memory-checker build: the checker's malloc replaces the C library's")
    for item in items:
        if item.get_closest_marker("exact_block_sizes") is not None:
            item.add_marker(skip)
        if item.get_closest_marker("c_library_memory") is not None:
            item.add_marker(skip_c_library)


@pytest.fixture(autouse=True)
def _collect_garbage_and_check_mimalloc(request: pytest.FixtureRequest) -> Iterator[None]:
    # Blocks free themselves when collected; start and end each test with no garbage pending.
    gc.collect()
    errors = lib.pmi_error_count()
    installed = pymimalloc.installed()
    yield
    gc.collect()
    reported = lib.pmi_error_count() - errors
    if reported and request.node.get_closest_marker("mimalloc_errors") is None:
        pytest.fail(f"mimalloc reported {reported} error(s) during this test (last errno {lib.pmi_error_last()})")
    # a test that installs or uninstalls in this process puts it back: the tests after it run as the suite was asked
    # to (under CI's PYMIMALLOC_INSTALL=1 run, the state machine's teardown once left the rest uninstalled)
    if pymimalloc.installed() != installed:
        pytest.fail(f"the test left Python's allocator served for {pymimalloc.installed()}, not {installed}")
