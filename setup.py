"""setuptools glue: cffi builds the one extension module from build_ffi.py (read that file for the build).

Before setuptools starts, a build (not an sdist, not metadata) checks for a C compiler and Python's
headers, and mimalloc's license is copied from the source tree the module is compiled from to
``LICENSE.mimalloc``: the metadata names it as a License-File, so every wheel carries it (in its
``.dist-info/licenses/``), and the sdist too. The build_ext below says on stderr (shown by ``pip -v``) what is
compiled and how long it took. The build_py below puts ``pymimalloc.pth`` at the top of site-packages, in
editable installs too, where Python's ``site`` reads it at start: it imports ``_pymimalloc_startup`` (a
top-level module of this project), which installs mimalloc as Python's allocator only when
``PYMIMALLOC_INSTALL`` is set (see pymimalloc/_startup.py).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import time

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import build_ffi  # noqa: E402  (the build script next to this file)

HERE = pathlib.Path(__file__).resolve().parent
MIMALLOC_LICENSE = "LICENSE.mimalloc"
# site-packages/pymimalloc.pth imports the top-level module _pymimalloc_startup (py-modules in pyproject.toml),
# so that Python's start does not import the whole pymimalloc package
PTH = "pymimalloc.pth"
# what else changes the objects: the compiler and its flags from the environment (distutils reads them)
COMPILER_VARIABLES = ("CC", "CFLAGS", "CPPFLAGS", "LDFLAGS", "LDSHARED", "ARCHFLAGS")


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        self.copy_file(str(HERE / PTH), str(pathlib.Path(self._pth_folder()) / PTH))

    def _pth_folder(self) -> str:
        if not self.editable_mode:
            return str(self.build_lib)
        # pip install -e: setuptools builds the editable wheel from the install folder (its import hook is
        # all that it adds itself), so the .pth goes there, to reach site-packages as in a wheel
        return str(self.get_finalized_command("install").install_lib)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, str(pathlib.Path(self.build_lib) / PTH)]


class BuildExtension(build_ext):
    """build_ext, and a build of another configuration than the last one in this build folder compiles everything.

    pip builds a checkout in place, and setuptools skips what looks up to date by file times alone: after a build
    with other options (``PYMIMALLOC_DEBUG``, ``CFLAGS``, another mimalloc tree) the old objects were kept and the
    build said "compiled in 0 s". So the configuration is written next to the objects, and a change forces a full
    compile."""

    def run(self) -> None:
        root, origin = build_ffi.locate_source()  # cached: the tree cffi_modules compiles
        options = build_ffi.compile_options()
        stamp = pathlib.Path(self.build_temp) / "pymimalloc-configuration.json"
        configuration = json.dumps({"options": {k: v for k, v in options.items() if k != "hot_text_script"},  # a temporary path
                                    "source": str(root), "origin": origin,
                                    "environment": {name: os.environ.get(name, "") for name in COMPILER_VARIABLES}},
                                   sort_keys=True, default=str)
        if not stamp.is_file() or stamp.read_text() != configuration:
            self.force = True
        build_ffi.say(
            f"compiling mimalloc {build_ffi.mimalloc_version(root)} ({origin['source']}) and pymimalloc's C glue "
            f"for {'this machine only (-march=native)' if options['native'] else 'CPU ' + str(options['target'])}, "
            f"MI_DEBUG={options['debug']} MI_SECURE={options['secure']}; 15 s to a minute"
            + ("" if self.force else " (objects of the same configuration are reused)")
        )
        started = time.monotonic()
        super().run()
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(configuration)
        build_ffi.say(f"compiled in {time.monotonic() - started:.0f} s")


def copy_mimalloc_license() -> None:
    """mimalloc's license, from the tree the module is compiled from, where pyproject.toml's license-files finds it.

    Only there, not in the package as well: one file in two places of a wheel is a defect (check-wheel-contents
    W002).
    """
    root, _ = build_ffi.locate_source()
    shutil.copyfile(root / "LICENSE", HERE / MIMALLOC_LICENSE)


# a build without a C compiler (or Python's headers) stops here, before setuptools' own lines, which never name
# what is missing; making an sdist or reading metadata needs neither
if {"build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop"} & set(sys.argv[1:]):
    build_ffi.check_toolchain()
copy_mimalloc_license()
setup(cffi_modules=["build_ffi.py:make_ffi"], cmdclass={"build_ext": BuildExtension, "build_py": BuildPy})
