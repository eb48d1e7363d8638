from __future__ import annotations

import doctest
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def test_quick_start_runs() -> None:
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 20
    assert result.failed == 0


def _commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", README.read_text())


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    main_job, tests = _commands()
    assert main_job.endswith("python -m pymimalloc bench --quick")
    assert tests.endswith("pytest")
    assert tests in (REPO / ".ci" / "run").read_text()
