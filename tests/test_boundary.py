"""One module touches the compiled module: pymimalloc/_core.py (and _startup.py, which runs at interpreter start
without the package, and _cpu.py, which reads the compiled file's bytes without loading it). Every other
module talks through _core's functions and the C types, and never through another module's private names."""

from __future__ import annotations

import ast
import pathlib

import pymimalloc

PACKAGE = pathlib.Path(pymimalloc.__file__).parent
BOUNDARY = {"_core.py", "_startup.py", "_cpu.py"}
COMPILED_NAMES = {"ffi", "lib", "_mimalloc"}


def _modules() -> list[pathlib.Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name not in BOUNDARY)


def _defined_in(tree: ast.AST) -> set[str]:
    """Private names a module defines itself: functions, methods, slots, attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_"):
            names.add(node.value)  # __slots__ entries
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


# the C base of Heap (HeapBase, csrc/pmi_python.c) is heap.py's own class; the standard library is not ours
OWN_C_BASE = _defined_in(ast.parse((PACKAGE / "_mimalloc.pyi").read_text()))
STANDARD_LIBRARY = {"runpy", "sys", "os", "warnings", "tracemalloc", "threading"}


def _offences(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    own = _defined_in(tree) | (OWN_C_BASE if path.name == "heap.py" else set())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if module.endswith("_mimalloc") or (module.endswith("_core") and names & COMPILED_NAMES):
                found.append(f"{path.name}:{node.lineno} imports {module} {sorted(names)}")
            if names & {"_mimalloc"}:
                found.append(f"{path.name}:{node.lineno} imports the compiled module")
        elif isinstance(node, ast.Import) and any(a.name.endswith("_mimalloc") for a in node.names):
            found.append(f"{path.name}:{node.lineno} imports the compiled module")
        elif isinstance(node, ast.Attribute):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id == "_core" and node.attr in COMPILED_NAMES:
                found.append(f"{path.name}:{node.lineno} reaches _core.{node.attr}")
            # another object's private attribute: x._name where x is not self/cls/a module of ours
            if (node.attr.startswith("_") and not node.attr.startswith("__") and isinstance(owner, ast.Name)
                    and owner.id not in ("self", "cls", "_core", *STANDARD_LIBRARY) and node.attr not in own):
                found.append(f"{path.name}:{node.lineno} reaches {owner.id}.{node.attr}")
    return found


def test_only_the_boundary_touches_the_compiled_module() -> None:
    offences = [o for path in _modules() for o in _offences(path)]
    assert offences == []


def test_the_check_finds_what_it_looks_for(tmp_path: pathlib.Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("from ._core import lib\nfrom . import _core\n_core.ffi.NULL\nheap._handle\n")
    assert len(_offences(planted)) == 3
