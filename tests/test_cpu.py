"""The import-time CPU check (pymimalloc/_cpu.py): a module built for features this CPU lacks is refused."""
from __future__ import annotations

import os
import pathlib
import sys

import pytest

import pymimalloc
from childproc import CHILDREN, run
from pymimalloc import _cpu, _startup
from pymimalloc._core import lib

MODULE = sys.modules["pymimalloc._mimalloc"].__file__
assert MODULE is not None
INFO = pymimalloc.build_info()
NEEDED = INFO["cpu_features"] or []
needs_features = pytest.mark.skipif(not NEEDED or _cpu.cpu_flags() is None,
                                    reason="the build recorded no CPU features, or /proc/cpuinfo is unreadable")


def _cpuinfo_without(tmp_path: pathlib.Path, feature: str) -> str:
    """A /proc/cpuinfo like this one, whose CPU lacks ``feature``."""
    flags = _cpu.cpu_flags()
    assert flags is not None and feature in flags
    path = tmp_path / "cpuinfo"
    key = "flags" if "flags" in pathlib.Path("/proc/cpuinfo").read_text() else "Features"
    path.write_text(f"processor\t: 0\n{key}\t\t: {' '.join(sorted(flags - {feature}))}\n\n")
    return str(path)


def test_the_file_holds_the_build_info_the_module_reports() -> None:
    build = _cpu.read_build_target(MODULE)
    assert build is not None
    assert (build.features, build.native, build.target) == (INFO["cpu_features"], INFO["native"], INFO["target"])
    assert lib.pmi_build_info()  # the module the file describes is the one loaded


def test_a_native_build_records_what_the_compiler_may_use() -> None:
    if not INFO["native"] or os.uname().machine != "x86_64":
        pytest.skip("a native x86-64 build")
    assert {"sse2", "sse"} <= set(NEEDED)  # the x86-64 baseline is always there
    assert NEEDED == sorted(NEEDED)


@needs_features
def test_this_cpu_has_every_feature_the_build_needs() -> None:
    assert not _cpu.missing_features(_cpu.BuildTarget(NEEDED, True, "native"), _cpu.cpu_flags())


@needs_features
def test_a_missing_feature_is_refused_with_the_way_out(tmp_path: pathlib.Path) -> None:
    feature = NEEDED[-1]
    error = _cpu.check_module_file(MODULE, _cpuinfo_without(tmp_path, feature))
    assert isinstance(error, ImportError)
    assert feature in str(error) and "illegal instruction" in str(error)
    if INFO["native"]:
        assert "PYMIMALLOC_PORTABLE=1" in str(error) and "--no-cache-dir" in str(error)
    assert _cpu.check_module_file(MODULE) is None  # this CPU, as it is
    assert _startup._cpu_refuses(MODULE, _cpuinfo_without(tmp_path, feature))  # the start-up path asks the same
    assert not _startup._cpu_refuses(MODULE)


def test_unknown_sides_refuse_nothing(tmp_path: pathlib.Path) -> None:
    assert _cpu.check_module_file(MODULE, str(tmp_path / "no-cpuinfo")) is None
    assert _cpu.missing_features(_cpu.BuildTarget(None, True, "native"), {"sse2"}) == []
    not_a_module = tmp_path / "x.so"
    not_a_module.write_bytes(b"\x7fELF nothing here")
    assert _cpu.read_build_target(str(not_a_module)) is None
    assert _cpu.read_build_target(str(tmp_path / "missing.so")) is None


@needs_features
def test_import_refuses_before_loading_the_compiled_module(tmp_path: pathlib.Path) -> None:
    # a child whose CPU "lacks" one feature: _cpu.py's reading of /proc/cpuinfo is replaced before the import
    cpuinfo = _cpuinfo_without(tmp_path, NEEDED[-1])
    result = run([str(CHILDREN / "cpu_refused_import.py"), cpuinfo], timeout=120, drop=("PYMIMALLOC_INSTALL",))
    assert result.returncode == 0, result.stderr
    assert "refused: pymimalloc's compiled module" in result.stdout and NEEDED[-1] in result.stdout
    assert "compiled module loaded: False" in result.stdout


@pytest.mark.parametrize("chunk", [7, 21, 64, 4096])
def test_the_build_info_is_found_wherever_chunks_split_it(tmp_path: pathlib.Path, chunk: int) -> None:
    info = b'{"mimalloc_version": "3.4.3", "cpu_features": ["sse2"], "native": true, "target": "native"}'
    whole = _cpu._build_info(MODULE)
    assert whole is not None and whole.startswith(b'{"mimalloc_version": ')
    assert _cpu._build_info(MODULE, chunk=1000) == whole
    for before in range(0, 2 * chunk, 5):  # the start and the end at every offset in and across chunks
        module = tmp_path / "m.so"
        module.write_bytes(b"\x7fELF" + b"x" * before + info + b"\0tail")
        assert _cpu._build_info(str(module), chunk) == info
    module.write_bytes(b"\x7fELF" + info)  # no NUL after it: not a build info
    assert _cpu._build_info(str(module), chunk) is None
