"""What the build says and what the distributions hold: the toolchain check, the sdist's manifest, the
startup files of wheels and editable installs."""
from __future__ import annotations

import pathlib
import site
import sys

import pytest

from childproc import run

REPO = pathlib.Path(__file__).resolve().parent.parent


from test_build import build_ffi  # noqa: E402  (the build script, loaded once by test_build)


def test_a_missing_compiler_is_named_with_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-cc --some-flag")
    with pytest.raises(SystemExit, match="no C compiler: 'no-such-cc' was not found") as raised:
        build_ffi.check_toolchain()
    assert "apt install gcc" in str(raised.value.code) and "set CC" in str(raised.value.code)
    monkeypatch.setenv("CC", sys.executable)  # any program that exists passes the compiler check
    build_ffi.check_toolchain()


def test_missing_python_headers_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("CC", sys.executable)
    monkeypatch.setattr(build_ffi.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    with pytest.raises(SystemExit, match=r"Python's C headers are missing \(no Python.h"):
        build_ffi.check_toolchain()


def test_a_build_without_a_compiler_stops_before_setuptools_starts() -> None:
    result = run(["setup.py", "bdist_wheel"], cwd=REPO, env={"CC": "no-such-cc"}, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "pymimalloc build error: no C compiler: 'no-such-cc' was not found" in output
    assert "running" not in output  # no setuptools command started
    assert len(output.strip().splitlines()) <= 3, output


def test_build_messages_go_to_stderr_only(capfd: pytest.CaptureFixture[str]) -> None:
    build_ffi.say("a message")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "pymimalloc build: a message\n")
    assert "/dev/tty" not in (REPO / "build_ffi.py").read_text()


def test_the_startup_module_is_not_a_copy_of_the_packages() -> None:
    # check-wheel-contents W002: the wheel held pymimalloc/_startup.py twice; now the top-level module only
    # finds and runs it
    top, package = (REPO / "_pymimalloc_startup.py").read_text(), (REPO / "pymimalloc" / "_startup.py").read_text()
    assert "def main()" in package and "def main(" not in top and len(top) < len(package) / 2


def _editable() -> bool:
    import importlib.metadata
    import json

    for dist in importlib.metadata.distributions(name="pymimalloc"):  # an egg-info in the checkout may come first
        text = dist.read_text("direct_url.json")
        if text and json.loads(text).get("dir_info", {}).get("editable"):
            return True
    return False


@pytest.mark.skipif(not _editable(), reason="pymimalloc is not installed in editable mode")
def test_an_editable_install_ships_the_startup_file() -> None:
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    installed = [pathlib.Path(f) / "pymimalloc.pth" for f in folders if (pathlib.Path(f) / "pymimalloc.pth").is_file()]
    assert installed and installed[0].read_text() == (REPO / "pymimalloc.pth").read_text()
    probe = "import sys; print('threading' in sys.modules); import pymimalloc; print(pymimalloc.installed())"
    result = run(["-c", probe], cwd=REPO.parent, env={"PYMIMALLOC_INSTALL": "1"}, timeout=120)
    assert result.returncode == 0 and result.stdout.split() == ["False", "('mem',", "'obj')"], result
