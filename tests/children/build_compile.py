"""Compile the cffi module with the build script of the checkout at argv[1] into the folder argv[2], as pip's
build would, with whatever MIMALLOC_SOURCE and PYMIMALLOC_* the environment holds."""

import sys

repo, out = sys.argv[1:]
sys.path.insert(0, repo)
import build_ffi  # noqa: E402 - the checkout's build script, found through the line above

build_ffi.make_ffi(project_relative=False).compile(tmpdir=out)
