from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import pymimalloc
from pymimalloc._core import lib


@pytest.fixture
def heap() -> Iterator[pymimalloc.Heap]:
    with pymimalloc.Heap() as h:
        yield h


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mimalloc_errors: the test makes mimalloc report errors on purpose (out of memory)")


@pytest.fixture(autouse=True)
def _collect_garbage_and_check_mimalloc(request: pytest.FixtureRequest) -> Iterator[None]:
    # Blocks free themselves when collected; start and end each test with no garbage pending.
    gc.collect()
    errors = lib.pmi_error_count()
    yield
    gc.collect()
    reported = lib.pmi_error_count() - errors
    if reported and request.node.get_closest_marker("mimalloc_errors") is None:
        pytest.fail(f"mimalloc reported {reported} error(s) during this test (last errno {lib.pmi_error_last()})")
