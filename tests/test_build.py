"""The compiled module: version, flags, exported symbols; and the build script's source handling."""
from __future__ import annotations

import importlib.metadata
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import sysconfig
import tarfile

import pytest

import pymimalloc
from childproc import CHILDREN, run
from pymimalloc._core import lib

REPO = pathlib.Path(__file__).resolve().parent.parent


def _load_build_script():
    """The build script as a module (importing it has no side effects), without putting the repo on sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_ffi", REPO / "build_ffi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_ffi = _load_build_script()


def test_versions() -> None:
    assert pymimalloc.mimalloc_version == "3.4.3"
    assert lib.mi_version() == lib.MI_MALLOC_VERSION == 30403  # header and library agree
    assert pymimalloc.__version__ == importlib.metadata.version("pymimalloc")


def test_build_info_describes_a_consistent_build() -> None:
    info = pymimalloc.build_info()
    assert info["mimalloc_version"] == pymimalloc.mimalloc_version
    assert info["mimalloc_source"]
    if info["mimalloc_source"] == build_ffi.SDIST_REQUIREMENT:
        assert info["mimalloc_sha256"] == build_ffi.SDIST_SHA256
    assert info["defines"]["MI_DEBUG"] == str(info["debug"])
    assert info["defines"]["MI_SECURE"] == str(info["secure"])
    assert ("NDEBUG" in info["defines"]) == (info["debug"] == 0)
    assert ("PMI_SCHEDULE_NOISE" in info["defines"]) == (info["debug"] != 0)  # checked builds only: pmi_internal.h
    assert ("-march=native" in info["cflags"]) == info["native"] == (not info["portable"])
    assert info["target"] == "native" if info["native"] else info["target"] != "native"
    assert info["compiler"].split()[0] in ("gcc", "clang") and any(c.isdigit() for c in info["compiler"])
    assert ("-g0" in info["cflags"]) == (info["debug"] == 0)  # release builds carry no debug info
    for flag in ("-O3", "-fvisibility=hidden"):
        assert flag in info["cflags"]
    # dlopen-safe TLS unless initial-exec was asked for at build time (PYMIMALLOC_TLS_MODEL)
    assert any(flag.startswith("-ftls-model=") for flag in info["cflags"])
    info["cflags"].append("changed")
    assert "changed" not in pymimalloc.build_info()["cflags"]  # callers get a copy


def _dynamic_symbols(path: str, *flags: str) -> list[str]:
    out = subprocess.run(["nm", "-D", *flags, path], capture_output=True, text=True, check=True).stdout
    return [line.split()[-1] for line in out.splitlines() if line.strip()]


def test_module_exports_only_its_init_symbol() -> None:
    from pymimalloc import _mimalloc

    defined = _dynamic_symbols(_mimalloc.__file__, "--defined-only")
    assert defined == ["PyInit__mimalloc"]
    # and it takes malloc from libc rather than defining (overriding) it
    undefined = _dynamic_symbols(_mimalloc.__file__, "--undefined-only")
    assert not any(name.startswith("mi_") for name in undefined)


def test_sha256_verification_rejects_a_wrong_file(tmp_path: pathlib.Path) -> None:
    fake = tmp_path / build_ffi.SDIST_FILENAME
    fake.write_bytes(b"not the sdist")
    with pytest.raises(SystemExit, match="expected " + build_ffi.SDIST_SHA256):
        build_ffi.verify_sha256(fake, build_ffi.SDIST_SHA256)


@pytest.mark.parametrize("make_source, message", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: tmp, "has no src/static.c"),
])
def test_bad_mimalloc_source_stops_with_one_clear_message(monkeypatch, tmp_path, make_source, message) -> None:
    monkeypatch.setenv("MIMALLOC_SOURCE", str(make_source(tmp_path)))
    with pytest.raises(SystemExit, match=message):
        build_ffi.locate_source()


def test_tarball_without_static_c_is_refused(monkeypatch, tmp_path: pathlib.Path) -> None:
    (tmp_path / "mimalloc" / "include").mkdir(parents=True)
    (tmp_path / "mimalloc" / "include" / "mimalloc.h").write_text("/* header only */\n")
    tarball = tmp_path / "broken.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "mimalloc", arcname="pkg/mimalloc")
    monkeypatch.setenv("MIMALLOC_SOURCE", str(tarball))
    monkeypatch.setenv("PYMIMALLOC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SystemExit, match="holds no mimalloc tree"):
        build_ffi.locate_source()


@pytest.mark.parametrize("variable, value", [("PYMIMALLOC_DEBUG", "4"), ("PYMIMALLOC_SECURE", "x")])
def test_bad_levels_are_refused(monkeypatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit, match=variable):
        build_ffi.compile_options()


def test_offline_portable_build_from_a_tarball(tmp_path: pathlib.Path) -> None:
    """MIMALLOC_SOURCE=<tarball> builds without the index, and PYMIMALLOC_PORTABLE drops -march=native."""
    root, origin = build_ffi.locate_source()  # the tree the installed module was built from (cached)
    tarball = tmp_path / "mimalloc-local.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(root, arcname="mimalloc-local/mimalloc")
    env = {"MIMALLOC_SOURCE": str(tarball), "PYMIMALLOC_PORTABLE": "1", "PYMIMALLOC_CACHE_DIR": str(tmp_path / "cache"),
           "PIP_NO_INDEX": "1"}
    out = tmp_path / "out"
    compiled = run([str(CHILDREN / "build_compile.py"), str(REPO), str(out)], env=env, cwd=REPO, timeout=600)
    assert compiled.returncode == 0, compiled.stderr
    built = next(out.glob("pymimalloc/_mimalloc*.so"))
    import json

    check = run([str(CHILDREN / "build_info_of.py"), str(built)])
    assert check.returncode == 0, check.stderr
    info = json.loads(check.stdout)
    assert info["mimalloc_source"] == str(tarball)
    assert info["mimalloc_sha256"] == build_ffi._sha256(tarball)
    assert info["portable"] is True and "-march=native" not in info["cflags"]
    if platform.machine() == "x86_64":
        assert "-march=x86-64-v2" in info["cflags"] and info["target"] == "x86-64-v2"
    assert (tmp_path / "cache").is_dir()
    shutil.rmtree(out)


def _shipped_files() -> list[str]:
    """The files of this checkout (git's list) or of this unpacked sdist (everything in it)."""
    if (REPO / ".git").exists():
        return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert (REPO / "PKG-INFO").is_file(), "tests run from neither a checkout nor an unpacked sdist"
    skipped = {"build", ".venv", ".hypothesis", ".pytest_cache", "__pycache__"}
    return [str(path.relative_to(REPO)) for path in REPO.rglob("*")
            if path.is_file() and not skipped & set(path.relative_to(REPO).parts) and not path.name.startswith(".venv")
            and path.suffix not in (".so", ".o") and path.name != "LICENSE.mimalloc"]


def test_no_mimalloc_code_is_shipped() -> None:
    files = _shipped_files()
    assert "csrc/pmi_heap.c" in files  # the listing works
    copyright_line = "Microsoft Research, " + "Daan"  # split, so this file does not match itself
    upstream_names = {"static.c", "heap.c", "alloc.c", "mimalloc.h", "types.h", "internal.h"}
    for name in files:
        assert pathlib.PurePath(name).name not in upstream_names, name
        path = REPO / name
        if path.is_file():
            assert copyright_line not in path.read_text(errors="replace"), name


def test_a_file_that_is_not_a_tarball_is_refused_in_one_paragraph(monkeypatch, tmp_path: pathlib.Path) -> None:
    not_a_tarball = tmp_path / "mimalloc.tar.gz"
    not_a_tarball.write_text("hello")
    monkeypatch.setenv("MIMALLOC_SOURCE", str(not_a_tarball))
    monkeypatch.setenv("PYMIMALLOC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SystemExit, match="could not be read as a tarball.*MIMALLOC_SOURCE must name") as raised:
        build_ffi.locate_source()
    assert "Traceback" not in str(raised.value) and str(raised.value).count("\n") <= 3


def test_an_unusable_cache_folder_is_refused_in_one_paragraph(monkeypatch, tmp_path: pathlib.Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")  # a folder cannot be made under a file, even by root
    monkeypatch.setenv("PYMIMALLOC_CACHE_DIR", str(a_file / "cache"))
    monkeypatch.delenv("MIMALLOC_SOURCE", raising=False)
    with pytest.raises(SystemExit, match="cannot be created or written.*Set PYMIMALLOC_CACHE_DIR"):
        build_ffi.locate_source()


def test_a_corrupted_cached_sdist_is_named_in_the_offline_error(monkeypatch, tmp_path: pathlib.Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / build_ffi.SDIST_FILENAME).write_bytes(b"corrupted")
    monkeypatch.setenv("PYMIMALLOC_CACHE_DIR", str(cache))
    monkeypatch.delenv("MIMALLOC_SOURCE", raising=False)
    # offline: no index, no find-links, no configuration file
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    with pytest.raises(SystemExit, match=r"(?s)had sha256 [0-9a-f]{64}, not " + build_ffi.SDIST_SHA256 + ".*deleted.*Could not download"):
        build_ffi.locate_source()
    assert not (cache / build_ffi.SDIST_FILENAME).exists()


def test_an_upstream_release_tarball_layout_is_accepted(monkeypatch, tmp_path: pathlib.Path) -> None:
    root, _ = build_ffi.locate_source()
    tarball = tmp_path / "mimalloc-3.4.3.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(root, arcname="mimalloc-3.4.3")  # as GitHub's release archive: mimalloc-3.4.3/src/...
    monkeypatch.setenv("MIMALLOC_SOURCE", str(tarball))
    monkeypatch.setenv("PYMIMALLOC_CACHE_DIR", str(tmp_path / "cache"))
    found, origin = build_ffi.locate_source()
    assert (found / "src" / "static.c").is_file() and (found / "LICENSE").is_file()
    assert origin["source"] == str(tarball)


@pytest.mark.parametrize("value, portable", [("", False), ("0", False), ("no", False), ("off", False),
                                             ("1", True), ("yes", True), ("TRUE", True)])
def test_portable_is_a_switch(monkeypatch, value: str, portable: bool) -> None:
    monkeypatch.setenv("PYMIMALLOC_PORTABLE", value)
    assert build_ffi.compile_options()["portable"] is portable


def test_portable_refuses_what_is_not_a_switch(monkeypatch) -> None:
    monkeypatch.setenv("PYMIMALLOC_PORTABLE", "maybe")
    with pytest.raises(SystemExit, match="PYMIMALLOC_PORTABLE='maybe' is not a switch"):
        build_ffi.compile_options()


def test_the_installed_package_carries_both_licenses() -> None:
    ours = importlib.metadata.distribution("pymimalloc")
    assert any(str(f).endswith("LICENSE") for f in ours.files or []), "our LICENSE is not in the installed metadata"
    theirs = ours.read_text("licenses/LICENSE.mimalloc")  # a License-File: .dist-info/licenses/
    assert theirs is not None and theirs.startswith("MIT License") and "Microsoft Corporation" in theirs
    assert "License-File: LICENSE.mimalloc" in str(ours.metadata)


def test_the_extension_is_named_for_this_interpreter_not_abi3() -> None:
    from pymimalloc import _mimalloc

    assert pathlib.Path(_mimalloc.__file__).name.endswith(sysconfig.get_config_var("EXT_SUFFIX"))
    assert ".abi3." not in _mimalloc.__file__


def test_release_builds_carry_no_debug_info() -> None:
    from pymimalloc import _mimalloc

    sections = subprocess.run(["readelf", "-S", "-W", _mimalloc.__file__], capture_output=True, text=True,
                              check=True).stdout
    assert ".text" in sections  # the listing works
    has_debug_info = ".debug_info" in sections
    assert has_debug_info == (pymimalloc.build_info()["debug"] > 0)


def test_a_build_of_another_configuration_compiles_everything_again(tmp_path: pathlib.Path) -> None:
    """pip builds a checkout in place and setuptools judges objects by file times alone: a second build with other
    flags kept the first build's objects and said "compiled in 0 s". The build folder now remembers its
    configuration: the same one reuses the objects, another compiles all of them again."""
    folders = ["--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "temp")]
    environment = {name: value for name, value in os.environ.items() if name not in ("CFLAGS", "CPPFLAGS", "CC")}

    def build(**variables: str) -> str:
        result = subprocess.run([sys.executable, "setup.py", "build_ext", *folders], cwd=REPO, capture_output=True,
                                text=True, env={**environment, **variables}, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    def compiled(output: str) -> int:
        return sum(1 for line in output.splitlines() if line.startswith(("gcc ", "cc ")) and " -c " in line)

    assert compiled(build()) >= 2  # the first build compiles mimalloc's unit and the glue
    assert compiled(build(CPPFLAGS="-DPMI_BUILD_PROBE=1")) >= 2  # another configuration: all again
    again = build(CPPFLAGS="-DPMI_BUILD_PROBE=1")
    assert compiled(again) == 0 and "reused" in again  # the same one: nothing
