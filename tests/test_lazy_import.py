"""``import pymimalloc`` loads what install() needs and nothing more; every other public name is imported from its
module at its first use (pymimalloc/__init__.py). Each check runs in a fresh interpreter, where nothing is loaded."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import pymimalloc

INIT = pathlib.Path(pymimalloc.__file__)

# What a program that only calls install() must not load: our other modules, and the standard library's modules
# that only they need (dataclasses alone brings inspect, ast, dis and tokenize: 2,162 objects for the collector).
NOT_FOR_INSTALL = ["pymimalloc.heap", "pymimalloc.stats", "pymimalloc.visit", "pymimalloc.options",
                   "pymimalloc.measure", "dataclasses", "difflib", "tracemalloc", "json", "pickle", "inspect"]


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_install_alone_loads_no_more_than_it_needs() -> None:
    out = _run("import sys, pymimalloc\npymimalloc.install()\n"
               f"print(sorted(m for m in {NOT_FOR_INSTALL!r} if m in sys.modules))")
    assert out.strip() == "[]"


def _type_checking_names() -> dict[str, str]:
    """name -> module of the imports under ``if TYPE_CHECKING:`` in __init__.py (what type checkers see)."""
    names: dict[str, str] = {}
    for node in ast.walk(ast.parse(INIT.read_text())):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.level == 1
                names.update({alias.name: str(stmt.module) for alias in stmt.names})
    return names


def test_the_lazy_table_matches_what_type_checkers_see_and_all() -> None:
    lazy = pymimalloc._LAZY  # this test's subject: the package's own table
    assert lazy == _type_checking_names()
    eager = {"__version__", "install", "installed", "uninstall"}
    assert set(pymimalloc.__all__) == set(lazy) | eager
    assert set(pymimalloc.__all__) <= set(dir(pymimalloc))


@pytest.mark.parametrize("name", sorted(pymimalloc._LAZY))
def test_each_name_is_its_modules_object_whichever_module_loads_first(name: str) -> None:
    """In a fresh interpreter, load one name's module through another route first (``import pymimalloc.<module>``,
    which binds the module to the package's attribute of that name), then check every public name."""
    module = pymimalloc._LAZY[name]
    out = _run(
        "import importlib, types, pymimalloc\n"
        f"importlib.import_module('pymimalloc.{module}')\n"
        "for n, m in pymimalloc._LAZY.items():\n"
        "    value = getattr(pymimalloc, n)\n"
        "    assert not isinstance(value, types.ModuleType), (n, value)\n"
        "    assert value is getattr(importlib.import_module('pymimalloc.' + m), n), n\n"
        "print(pymimalloc.stats()['pages'] is not None, type(pymimalloc.options).__name__)\n"
    )
    assert out.split() == ["True", "Options"]


def test_first_uses_from_many_threads_at_once_see_the_same_objects() -> None:
    """Sixteen threads reach every lazy name at the same moment (a barrier), in a fresh interpreter."""
    out = _run(
        "import threading, pymimalloc\n"
        "names = sorted(pymimalloc._LAZY)\n"
        "barrier = threading.Barrier(16)\n"
        "seen = []\n"
        "def reach(shift):\n"
        "    barrier.wait()\n"
        "    seen.append({n: id(getattr(pymimalloc, n)) for n in names[shift:] + names[:shift]})\n"
        "threads = [threading.Thread(target=reach, args=(i,)) for i in range(16)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert len(seen) == 16 and all(s == seen[0] for s in seen), seen\n"
        "with pymimalloc.Heap() as heap:\n"
        "    print(heap.malloc(8).size)\n"
    )
    assert out.strip() == "8"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        pymimalloc.no_such_name  # noqa: B018
