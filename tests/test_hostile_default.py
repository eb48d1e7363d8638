"""as_default() is scoped like a ContextVar (per thread, per asyncio task): misuse never crashes, and every
thread can still allocate afterwards. Each scenario runs in a child (childproc.run_program)."""

from __future__ import annotations

import pytest

from childproc import run_program


@pytest.mark.parametrize("finish", ["closed_in_other_thread", "collected_in_main_thread"])
def test_as_default_generator_finished_elsewhere_does_not_crash(finish: str) -> None:
    run_program("default_generator.py", finish)


def test_as_default_exited_out_of_order_does_not_crash() -> None:
    run_program("default_out_of_order.py")


def test_as_default_is_scoped_per_asyncio_task() -> None:
    run_program("default_asyncio.py")
