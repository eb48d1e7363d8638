from __future__ import annotations

import doctest
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
#: the hand-written pages of the documentation site (mkdocs.yml); bench*.md are written by the bench command
PAGES = sorted(p for p in DOCS.glob("*.md") if not re.fullmatch(r"bench(-\w+)?\.md", p.name))


def test_quick_start_runs() -> None:
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 20
    assert result.failed == 0


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_examples_of_each_documentation_page_run(page: pathlib.Path) -> None:
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS)
    examples = page.read_text().count("```python")
    assert (result.attempted > 0) == (examples > 0), f"{page.name}: ```python blocks without >>> examples"
    assert result.failed == 0


def test_the_site_lists_every_page_and_the_readme_names_only_pages_that_exist() -> None:
    config = (REPO / "mkdocs.yml").read_text()
    nav = set(re.findall(r"^  - .*?: ([\w-]+\.md)$", config, flags=re.MULTILINE))
    assert {p.name for p in PAGES} <= nav and all((DOCS / name).is_file() for name in nav)
    named = set(re.findall(r"`docs/([\w.-]+)`", README.read_text()))
    assert named and all((DOCS / name).is_file() for name in named), named
    # PyPI shows the README without the repository: its links must be absolute (or anchors in itself)
    assert all(link.startswith(("https://", "#")) for link in re.findall(r"\]\(([^)]*)\)", README.read_text()))


def _commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", README.read_text())


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    main_job, tests = _commands()
    assert main_job.endswith("python -m pymimalloc bench --quick")
    assert tests.endswith("pytest")
    assert tests in (REPO / ".ci" / "run").read_text()
