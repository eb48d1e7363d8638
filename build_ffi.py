"""The whole build of pymimalloc's compiled module, in one file.

1. Find the mimalloc source tree: ``MIMALLOC_SOURCE`` (a folder or a tarball) if set, otherwise the pinned
   sdist ``cmeel-mimalloc==3.4.3`` fetched through pip's configured index, checked against its sha256,
   cached outside the repository and unpacked (``src/`` and ``include/`` only).
2. Pick the compile flags (release by default; see ``PYMIMALLOC_*`` below).
3. Declare the C API that Python sees: the plain headers in ``csrc/`` are the cdef.

Environment:
  MIMALLOC_SOURCE=<dir|tarball>  use this mimalloc tree instead of the pinned sdist (offline builds,
                                 other versions). A dir may be the mimalloc root or contain ``mimalloc/``.
  PYMIMALLOC_CACHE_DIR=<dir>     where the verified sdist and its unpacked tree are kept
                                 (default: $XDG_CACHE_HOME/pymimalloc or ~/.cache/pymimalloc).
  PYMIMALLOC_PORTABLE=1          do not compile with -march=native.
  PYMIMALLOC_DEBUG=0..3          MI_DEBUG level (3 = full invariant checks).
  PYMIMALLOC_SECURE=0..5         MI_SECURE level.
  PYMIMALLOC_TRACK=valgrind|asan mimalloc's memory-checker support (MI_TRACK_VALGRIND / MI_TRACK_ASAN),
                                 for runs under Valgrind or AddressSanitizer (see benchmarks/memcheck.sh).
  PYMIMALLOC_TLS_MODEL=<model>   -ftls-model (default local-dynamic, safe under dlopen; initial-exec is
                                 faster but takes static TLS space that a dlopen'ed module may not get).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE / "csrc"

SDIST_REQUIREMENT = "cmeel-mimalloc==3.4.3"
SDIST_FILENAME = "cmeel_mimalloc-3.4.3.tar.gz"
SDIST_SHA256 = "8d355a77cc0f4133cdeb9156c9098bbb4e88924326d38343cf73ff9caa95ece3"

# Our headers, in the order cffi reads them. They are plain declarations so reviewers read C, not strings.
CDEF_HEADERS = ["mimalloc_api.h", "pmi_heap.h", "pmi_report.h", "pmi_numpy.h", "pmi_bench.h", "pmi_stress.h", "pmi_build.h"]
C_SOURCES = ["pmi_mimalloc.c", "pmi_heap.c", "pmi_report.c", "pmi_numpy.c", "pmi_bench.c", "pmi_stress.c"]


class BuildError(SystemExit):
    """Stops the build with one message that says what went wrong and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(f"\npymimalloc build error: {message}\n")


# ---------------------------------------------------------------------------------------------------------
# Finding the mimalloc tree
# ---------------------------------------------------------------------------------------------------------

def _cache_dir() -> pathlib.Path:
    explicit = os.environ.get("PYMIMALLOC_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "pymimalloc"


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_mimalloc_root(path: pathlib.Path) -> bool:
    return (path / "src" / "static.c").is_file() and (path / "include" / "mimalloc.h").is_file()


def _find_root(top: pathlib.Path) -> pathlib.Path | None:
    """The mimalloc root at or up to two levels below ``top`` (an sdist nests it as ``<name>/mimalloc``)."""
    for candidate in [top, *sorted(top.glob("*")), *sorted(top.glob("*/*"))]:
        if candidate.is_dir() and _is_mimalloc_root(candidate):
            return candidate
    return None


def _unpack(tarball: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """Unpack only ``src/``, ``include/`` and ``LICENSE`` of the mimalloc tree in ``tarball`` into ``dest``."""
    if _is_mimalloc_root(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        with tarfile.open(tarball) as tar:
            wanted = [m for m in tar.getmembers() if re.search(r"(^|/)mimalloc/(src/|include/|LICENSE$)", m.name)]
            tar.extractall(staging, members=wanted, filter="data")
        root = _find_root(staging)
        if root is None:
            raise BuildError(
                f"{tarball} holds no mimalloc tree (src/static.c and include/mimalloc.h are missing). "
                "Point MIMALLOC_SOURCE at an upstream mimalloc checkout or release tarball."
            )
        try:
            os.replace(root, dest)  # atomic: a concurrent build sees either nothing or a whole tree
        except OSError:
            if not _is_mimalloc_root(dest):
                raise
        return dest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def verify_sha256(path: pathlib.Path, expected: str) -> None:
    """Raise BuildError unless the file at ``path`` has the sha256 ``expected``."""
    actual = _sha256(path)
    if actual != expected:
        raise BuildError(
            f"{path.name} has sha256 {actual}, expected {expected}. The file was not used. "
            "Check your index or mirror, or build with MIMALLOC_SOURCE=<trusted mimalloc tree>."
        )


def _download_sdist(cache: pathlib.Path) -> pathlib.Path:
    """Fetch the pinned sdist through pip, so pip's own index configuration decides where it comes from."""
    cached = cache / SDIST_FILENAME
    if cached.is_file() and _sha256(cached) == SDIST_SHA256:
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "cmeel-mimalloc",
               "--disable-pip-version-check", "--dest", tmp, SDIST_REQUIREMENT]
        print("pymimalloc: fetching", SDIST_REQUIREMENT, "with pip", flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        got = pathlib.Path(tmp) / SDIST_FILENAME
        if proc.returncode != 0 or not got.is_file():
            raise BuildError(
                f"could not download {SDIST_REQUIREMENT} with pip (exit code {proc.returncode}).\n"
                f"{proc.stdout.strip()[-2000:]}\n"
                "Check the network and pip's index configuration, or build offline with "
                "MIMALLOC_SOURCE=<path to the mimalloc tree or tarball>."
            )
        verify_sha256(got, SDIST_SHA256)
        os.replace(got, cached)
    return cached


def locate_source() -> tuple[pathlib.Path, dict[str, str | None]]:
    """Return the mimalloc root and a description of where it came from, for build_info()."""
    override = os.environ.get("MIMALLOC_SOURCE")
    if override:
        path = pathlib.Path(override).expanduser().resolve()
        if path.is_dir():
            root = _find_root(path)
            if root is None:
                raise BuildError(
                    f"MIMALLOC_SOURCE={override} has no src/static.c and include/mimalloc.h. "
                    "Point it at the root of a mimalloc source tree (or a folder that holds mimalloc/)."
                )
            return root, {"source": str(path), "sha256": None}
        if path.is_file():
            digest = _sha256(path)
            root = _unpack(path, _cache_dir() / f"source-{digest[:16]}")
            return root, {"source": str(path), "sha256": digest}
        raise BuildError(f"MIMALLOC_SOURCE={override} does not exist. Unset it to use {SDIST_REQUIREMENT}.")

    tarball = _download_sdist(_cache_dir())
    root = _unpack(tarball, _cache_dir() / f"mimalloc-3.4.3-{SDIST_SHA256[:16]}")
    return root, {"source": SDIST_REQUIREMENT, "sha256": SDIST_SHA256}


def _mimalloc_version(root: pathlib.Path) -> str:
    text = (root / "include" / "mimalloc.h").read_text()
    match = re.search(r"#define\s+MI_MALLOC_VERSION\s+(\d+)", text)
    if match is None:
        raise BuildError(f"{root}/include/mimalloc.h does not define MI_MALLOC_VERSION.")
    number = int(match.group(1))
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"


# ---------------------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------------------

def _level(name: str, highest: int) -> int:
    raw = os.environ.get(name, "0").strip() or "0"
    if not raw.isdigit() or int(raw) > highest:
        raise BuildError(f"{name}={raw!r} is not a level from 0 to {highest}.")
    return int(raw)


def _tls_model() -> str:
    model = os.environ.get("PYMIMALLOC_TLS_MODEL", "local-dynamic")
    if model not in ("local-dynamic", "global-dynamic", "initial-exec"):
        raise BuildError(f"PYMIMALLOC_TLS_MODEL={model!r}: use local-dynamic, global-dynamic or initial-exec.")
    return model


def compile_options() -> dict[str, object]:
    portable = os.environ.get("PYMIMALLOC_PORTABLE", "0") not in ("", "0")
    debug = _level("PYMIMALLOC_DEBUG", 3)
    secure = _level("PYMIMALLOC_SECURE", 5)
    cflags = [
        "-O3",
        "-std=gnu11",
        "-fvisibility=hidden",       # export nothing but PyInit_ (mimalloc exports only with MI_SHARED_LIB)
        f"-ftls-model={_tls_model()}",  # dlopen'ed: local-dynamic unless asked (mimalloc#147)
        "-Wno-unknown-pragmas",
    ]
    if platform.machine() in ("x86_64", "AMD64") and _tls_model() != "initial-exec":
        # TLS descriptors: dynamic TLS (safe in a dlopen'ed module) at nearly initial-exec speed. Without
        # them every mi_malloc pays a __tls_get_addr call (benchmarks/build_parity.py measures this).
        cflags.append("-mtls-dialect=gnu2")
    if not portable:
        cflags.append("-march=native")
    defines = [("MI_DEBUG", str(debug)), ("MI_SECURE", str(secure))]
    track = os.environ.get("PYMIMALLOC_TRACK", "").strip().lower()
    if track == "valgrind":
        defines.append(("MI_TRACK_VALGRIND", "1"))
    elif track == "asan":
        defines.append(("MI_TRACK_ASAN", "1"))
        # UBSan too; any finding aborts. The runtimes come from LD_PRELOAD (benchmarks/asan.py).
        cflags += ["-fsanitize=address", "-fsanitize=undefined", "-fno-sanitize-recover=undefined"]
    elif track:
        raise BuildError(f"PYMIMALLOC_TRACK={track!r}: use valgrind or asan.")
    if debug == 0:
        defines.append(("NDEBUG", "1"))
    else:
        cflags.append("-UNDEBUG")
        defines.append(("MI_STAT", "1"))
    return {"cflags": cflags, "defines": defines, "portable": portable, "debug": debug, "secure": secure}


# ---------------------------------------------------------------------------------------------------------
# The cffi module
# ---------------------------------------------------------------------------------------------------------

def _numpy_include() -> str:
    """numpy's C headers (numpy >= 2 is a build requirement; arrays built against 2.x run on any 2.x)."""
    try:
        import numpy
    except ImportError:
        raise BuildError("numpy >= 2 is needed to build (its C headers); pip installs it from pyproject.toml.")
    return numpy.get_include()


def _numpy_version() -> str:
    import numpy

    return str(numpy.__version__)


def _read_cdef() -> str:
    return "\n".join((CSRC / name).read_text() for name in CDEF_HEADERS)


def _c_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid C string literal for ASCII text


def make_ffi(project_relative: bool = True) -> FFI:
    """The FFI builder for ``pymimalloc._mimalloc``.

    setuptools (through ``cffi_modules``) needs source paths relative to the project;
    ``ffi.compile()`` changes directory first and needs absolute ones (``project_relative=False``).
    """
    root, origin = locate_source()
    options = compile_options()
    version = _mimalloc_version(root)
    info = {
        "mimalloc_version": version,
        "mimalloc_source": origin["source"],
        "mimalloc_sha256": origin["sha256"],
        "cflags": options["cflags"],
        "defines": {k: v for k, v in options["defines"]},  # type: ignore[union-attr]
        "portable": options["portable"],
        "native": not options["portable"],
        "debug": options["debug"],
        "secure": options["secure"],
        "compiler": os.environ.get("CC", "cc"),
        "python": sys.version.split()[0],
        "numpy_headers": _numpy_version(),
    }
    ffibuilder = FFI()
    ffibuilder.cdef(_read_cdef())
    ffibuilder.set_source(
        "pymimalloc._mimalloc",
        "#include <mimalloc.h>\n"
        '#include "pmi_heap.h"\n'
        '#include "pmi_report.h"\n'
        '#include "pmi_numpy.h"\n'
        '#include "pmi_bench.h"\n'
        '#include "pmi_stress.h"\n'
        '#include "pmi_build.h"\n'
        f"static const char pmi_build_info_json[] = {_c_string(json.dumps(info))};\n"
        "const char* pmi_build_info(void) { return pmi_build_info_json; }\n",
        sources=[f"csrc/{name}" if project_relative else str(CSRC / name) for name in C_SOURCES],
        include_dirs=[str(root / "include"), str(root / "src"), str(CSRC), _numpy_include()],
        define_macros=options["defines"],  # type: ignore[arg-type]
        extra_compile_args=options["cflags"],  # type: ignore[arg-type]
        extra_link_args=["-fvisibility=hidden"],
        libraries=["pthread"],
    )
    return ffibuilder


# setup.py names make_ffi (cffi calls it), so importing this file has no side effects.
if __name__ == "__main__":
    make_ffi(project_relative=False).compile(verbose=True)
