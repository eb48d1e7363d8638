"""Options that break mimalloc (guarded_sample_rate, destroy_on_exit) are refused when set, and neutralised
when they come from the environment. Each runs in a child (childproc.run_program)."""

from __future__ import annotations

from childproc import run_program


def test_setting_guarded_sample_rate_raises_value_error() -> None:
    run_program("options_guarded_sample_rate.py")


def test_guarded_sample_rate_from_environment_is_neutralised() -> None:
    result = run_program(
        "options_guarded_from_environment.py",
        env={"MIMALLOC_GUARDED_SAMPLE_RATE": "1"},
        stderr_ok=lambda err: "guarded_sample_rate" in err and "Traceback" not in err,
    )
    assert "guarded_sample_rate" in result.stderr


def test_setting_destroy_on_exit_raises_value_error() -> None:
    run_program("options_destroy_on_exit.py")


def test_destroy_on_exit_from_environment_exits_cleanly() -> None:
    run_program(
        "options_destroy_on_exit_from_environment.py",
        env={"MIMALLOC_DESTROY_ON_EXIT": "1"},
        timeout=30,
        stderr_ok=lambda err: err == "" or ("destroy_on_exit" in err and "Traceback" not in err),
    )
