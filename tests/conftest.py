from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import pymimalloc


@pytest.fixture
def heap() -> Iterator[pymimalloc.Heap]:
    with pymimalloc.Heap() as h:
        yield h


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    # Blocks free themselves when collected; start and end each test with no garbage pending.
    gc.collect()
    yield
    gc.collect()
