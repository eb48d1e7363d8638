"""The whole build of pymimalloc's compiled module, in one file.

1. Find the mimalloc source tree: ``MIMALLOC_SOURCE`` (a folder or a tarball) if set, otherwise the pinned
   sdist ``cmeel-mimalloc==3.4.3`` fetched through pip's configured index, checked against its sha256,
   cached outside the repository and unpacked (``src/`` and ``include/`` only).
2. Pick the compile flags (release by default; see ``PYMIMALLOC_*`` below).
3. Declare the C API that Python sees: the plain headers in ``csrc/`` are the cdef, as the C preprocessor
   reads them (so a header may declare with a macro table, as pmi_bench.h does).

``python build_ffi.py --check-warnings`` compiles our C (not mimalloc's) with the real build's flags plus
``-Wall -Wextra -Werror``; CI runs it.

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
  PYMIMALLOC_LTO=0|1             link-time optimisation (default 1): the allocator hook's fast paths
                                 (pmi_allocator.c) inline mimalloc's (pmi_mimalloc.c) across the two units.
  PYMIMALLOC_TLS_MODEL=<model>   -ftls-model (default local-dynamic, safe under dlopen; initial-exec is
                                 faster but takes static TLS space that a dlopen'ed module may not get).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import json
import os
import pathlib
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from typing import Any

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE / "csrc"

SDIST_REQUIREMENT = "cmeel-mimalloc==3.4.3"
SDIST_FILENAME = "cmeel_mimalloc-3.4.3.tar.gz"
SDIST_SHA256 = "8d355a77cc0f4133cdeb9156c9098bbb4e88924326d38343cf73ff9caa95ece3"

# Our headers, in the order cffi reads them as the cdef and the module includes them: plain C, so reviewers
# read C, not strings. mimalloc_api.h declares for cffi the part of mimalloc's API that Python calls; the
# module includes mimalloc's own <mimalloc.h> in its place.
CDEF_HEADERS = ["mimalloc_api.h", "pmi_heap.h", "pmi_report.h", "pmi_numpy.h", "pmi_bench.h", "pmi_build.h", "pmi_python.h", "pmi_allocator.h"]
C_SOURCES = ["pmi_mimalloc.c", "pmi_heap.c", "pmi_report.c", "pmi_numpy.c", "pmi_bench.c", "pmi_python.c", "pmi_allocator.c"]
# Warnings our C must compile without (python build_ffi.py --check-warnings; CI runs it)
WARNING_FLAGS = ["-Wall", "-Wextra", "-Werror"]


def package_version() -> str:
    """pymimalloc's version, from pymimalloc/_version.py (the package cannot be imported before it is built)."""
    text = (HERE / "pymimalloc" / "_version.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise BuildError("pymimalloc/_version.py does not set __version__ to a string.")
    return match.group(1)


def say(message: str) -> None:
    """Tell the person running the build what it is doing, on stderr, as pip expects of a build backend.

    pip shows a backend's output with ``pip install -v`` (and whenever the build fails); ``python -m build``
    and CI logs show it always. Nothing is written to the terminal behind pip's back: it would land inside
    pip's spinner, under ``pip install -q`` and in the output of tests that build.
    """
    sys.stderr.write(f"pymimalloc build: {message}\n")
    sys.stderr.flush()


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
    """Unpack the mimalloc tree in ``tarball`` (only its ``src/``, ``include/`` and ``LICENSE``) into ``dest``.

    The tree may be the tarball's top, one folder down (an upstream release, ``mimalloc-3.4.3/src/...``) or
    two (the pinned sdist, ``cmeel_mimalloc-3.4.3/mimalloc/src/...``).
    """
    if _is_mimalloc_root(dest):
        return dest
    staging = pathlib.Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=_writable(dest.parent)))
    try:
        try:
            with tarfile.open(tarball) as tar:
                wanted = [m for m in tar.getmembers()
                          if re.fullmatch(r"([^/]+/){0,2}(src/.*|include/.*|LICENSE)", m.name)]
                tar.extractall(staging, members=wanted, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:
            raise BuildError(
                f"{tarball} could not be read as a tarball ({type(error).__name__}: {str(error).splitlines()[0]}). "
                "MIMALLOC_SOURCE must name a mimalloc source folder or a .tar/.tar.gz/.tar.xz of one, such as "
                "upstream's release tarball or the cmeel-mimalloc sdist."
            ) from None
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


def _writable(folder: pathlib.Path) -> pathlib.Path:
    """``folder``, created if needed; BuildError if it cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe.")
        probe.close()
    except OSError as error:
        raise BuildError(
            f"the cache folder {folder} cannot be created or written ({error.strerror or error}). "
            "Set PYMIMALLOC_CACHE_DIR to a folder you can write, or fix its permissions."
        ) from None
    return folder


def verify_sha256(path: pathlib.Path, expected: str) -> None:
    """Raise BuildError unless the file at ``path`` has the sha256 ``expected``."""
    actual = _sha256(path)
    if actual != expected:
        raise BuildError(
            f"{path.name} has sha256 {actual}, expected {expected}. The file was not used. "
            "Check your index or mirror, or build with MIMALLOC_SOURCE=<trusted mimalloc tree>."
        )


# pip prepares an sdist's metadata even for `pip download`: for cmeel-mimalloc that means installing its
# build backend (cmeel, cmake: about 30 MB) and running a CMake configure, a minute or more, only to learn a
# name and version pip already knows. With --no-build-isolation pip asks the backend found on PYTHONPATH
# instead, so we put this stand-in for the sdist's backend ("cmeel", per its pyproject.toml) there. It
# answers pip's one question from the sdist's own PKG-INFO and builds nothing. pip still finds and fetches
# the file with its own index configuration (index URLs, find-links, certificates, proxies, credentials).
_METADATA_ONLY_BACKEND = """\
import email, pathlib


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = pathlib.Path("PKG-INFO").read_text(encoding="utf-8")
    fields = email.message_from_string(info)
    name = fields["Name"].replace("-", "_") + "-" + fields["Version"] + ".dist-info"
    (pathlib.Path(metadata_directory) / name).mkdir()
    (pathlib.Path(metadata_directory) / name / "METADATA").write_text(info, encoding="utf-8")
    return name
"""
SDIST_BACKEND = "cmeel"


def _download_sdist(cache: pathlib.Path) -> pathlib.Path:
    """Fetch the pinned sdist through pip, so pip's own index configuration decides where it comes from."""
    cached = cache / SDIST_FILENAME
    refused = ""
    if cached.is_file():
        actual = _sha256(cached)
        if actual == SDIST_SHA256:
            return cached
        refused = (f"The cached {cached} had sha256 {actual}, not {SDIST_SHA256}; it was deleted and not used. ")
        say(f"the cached {SDIST_FILENAME} failed its sha256 check; deleted it, fetching it again")
        cached.unlink()
    with tempfile.TemporaryDirectory(dir=_writable(cache)) as tmp:
        backend = pathlib.Path(tmp) / "backend" / SDIST_BACKEND
        backend.mkdir(parents=True)
        (backend / "__init__.py").write_text(_METADATA_ONLY_BACKEND)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "cmeel-mimalloc",
               "--no-build-isolation", "--disable-pip-version-check", "--dest", tmp, SDIST_REQUIREMENT]
        env = dict(os.environ, PYTHONPATH=str(backend.parent))
        say(f"fetching {SDIST_REQUIREMENT} (mimalloc's sources, 1.4 MB) with pip, into {cache}")
        started = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        got = pathlib.Path(tmp) / SDIST_FILENAME
        if proc.returncode != 0 or not got.is_file():
            raise BuildError(
                f"{refused}Could not download {SDIST_REQUIREMENT} with pip (exit code {proc.returncode}).\n"
                f"{proc.stdout.strip()[-2000:]}\n"
                "Check the network and pip's index configuration, or build offline with "
                "MIMALLOC_SOURCE=<path to the mimalloc tree or tarball>."
            )
        verify_sha256(got, SDIST_SHA256)
        os.replace(got, cached)
        say(f"fetched and verified {SDIST_FILENAME} in {time.monotonic() - started:.1f} s")
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


def mimalloc_version(root: pathlib.Path) -> str:
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


def _target(portable: bool) -> str | None:
    """The -march value: this machine's CPU, or the CPU family's widely deployed baseline for portable builds.

    x86-64-v2 (SSE4.2, POPCNT; every x86-64 CPU since 2009, and the floor of current enterprise Linux
    distributions) rather than v3 (AVX2, BMI), which leaves out CPUs still in service. Other families get
    their compiler's default, which is their baseline.
    """
    if not portable:
        return "native"
    if platform.machine() in ("x86_64", "AMD64"):
        return "x86-64-v2"
    return None


def _switch(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "no", "false", "off"):
        return False
    if raw in ("1", "yes", "true", "on"):
        return True
    raise BuildError(f"{name}={raw!r} is not a switch: use 1 (or yes, true, on) or 0 (or no, false, off).")


def _tls_model() -> str:
    model = os.environ.get("PYMIMALLOC_TLS_MODEL", "local-dynamic")
    if model not in ("local-dynamic", "global-dynamic", "initial-exec"):
        raise BuildError(f"PYMIMALLOC_TLS_MODEL={model!r}: use local-dynamic, global-dynamic or initial-exec.")
    return model


HOT_TEXT = CSRC / "pmi_hot_text.ld"
# the default script's .text statement, where the hot functions go first
_TEXT_STATEMENT = re.compile(r"\n(\s*)\.text\s*:\s*\n\s*\{\n")


@functools.lru_cache(maxsize=None)
def _hot_text(cflags: tuple[str, ...]) -> str:
    """The linker script that puts HOT_TEXT's functions first in .text (benchmarks/hot_text.py says why), or "" for
    the default layout: not on Linux, with PYMIMALLOC_HOT_TEXT=0, or where this compiler's linker does not print its
    default script or does not link a probe with the changed one. The script is the linker's own default for shared
    objects with HOT_TEXT's lines first inside .text, between the symbols pmi_hot_text_start and pmi_hot_text_end
    (tests/test_hot_text.py reads them). A separate output section placed the same code as well, but valgrind reads no
    symbols outside .text, and its profiles of the hook lost their names. Written to a temporary folder that lives
    as long as this build."""
    raw = os.environ.get("PYMIMALLOC_HOT_TEXT", "").strip()
    if not sys.platform.startswith("linux") or (raw and not _switch("PYMIMALLOC_HOT_TEXT")) or not HOT_TEXT.exists():
        return ""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="pymimalloc-link-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    probe = folder / "probe.c"
    probe.write_text("int pmi_probe(void);\nint pmi_probe(void) { return 1; }\n")
    link = [*link_command(), *cflags, "-fPIC", "-ffunction-sections", str(probe), "-o", str(folder / "probe.so")]
    try:
        verbose = subprocess.run([*link, "-Wl,--verbose"], capture_output=True, text=True)
        parts = verbose.stdout.split("=" * 50)
        found = _TEXT_STATEMENT.search(parts[1]) if verbose.returncode == 0 and len(parts) >= 3 else None
        if found is None:
            return ""
        script = folder / "pmi_link.ld"
        default = parts[1].strip("=\n")
        script.write_text(default[:found.end()] + "    HIDDEN(pmi_hot_text_start = .);\n" + HOT_TEXT.read_text()
                          + "    HIDDEN(pmi_hot_text_end = .);\n" + default[found.end():])
        ok = subprocess.run([*link, f"-Wl,-T,{script}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return ""
    return str(script) if ok else ""


def compile_options() -> dict[str, object]:
    portable = _switch("PYMIMALLOC_PORTABLE")
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
    target = _target(portable)
    if target:
        cflags.append(f"-march={target}")
    # no debug info in release builds (Python's own CFLAGS may carry -g); checked builds are for debugging
    cflags.append("-g0" if debug == 0 else "-g")
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
    # The hook that install() puts in front of CPython's allocator calls mimalloc's malloc and page-aware
    # free in another unit; with LTO they inline into it, as CPython's built-in mimalloc inlines.
    lto = _switch("PYMIMALLOC_LTO") if os.environ.get("PYMIMALLOC_LTO", "").strip() else True
    if lto:
        cflags.append("-flto=auto")
    # the functions a program under install() runs, first and together (csrc/pmi_hot_text.ld says why)
    hot_text = _hot_text(tuple(cflags))
    if hot_text:
        cflags.append("-ffunction-sections")
    if debug == 0:
        defines.append(("NDEBUG", "1"))
    else:
        cflags.append("-UNDEBUG")
        defines.append(("MI_STAT", "1"))
        # checked builds yield the CPU now and then between the glue's steps (csrc/pmi_internal.h)
        defines.append(("PMI_SCHEDULE_NOISE", "1"))
    return {"cflags": cflags, "defines": defines, "portable": portable, "native": not portable,
            "target": target or "default",
            "debug": debug, "secure": secure, "lto": lto, "hot_text": bool(hot_text), "hot_text_script": hot_text}


# ---------------------------------------------------------------------------------------------------------
# The toolchain, and the CPU features the flags let it use
# ---------------------------------------------------------------------------------------------------------

def compiler_command() -> list[str]:
    """The C compiler setuptools will run: ``CC`` if set, else the one Python was built with."""
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def link_command() -> list[str]:
    """The command setuptools links the module with, as its customize_compiler makes it: LDSHARED (the environment's,
    else Python's, with CC in place of Python's compiler when only CC is set), then LDFLAGS and CFLAGS."""
    if os.environ.get("LDSHARED"):
        command = shlex.split(os.environ["LDSHARED"])
    else:
        command = shlex.split(sysconfig.get_config_var("LDSHARED") or "cc -shared")
        python_cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
        if os.environ.get("CC") and command[:len(python_cc)] == python_cc:
            command = compiler_command() + command[len(python_cc):]
    return [*command, *shlex.split(os.environ.get("LDFLAGS", "")), *shlex.split(os.environ.get("CFLAGS", ""))]


def check_toolchain() -> None:
    """BuildError, before setuptools starts, if the C compiler or Python's C headers are missing."""
    command = compiler_command()
    if not command or shutil.which(command[0]) is None:
        raise BuildError(
            f"no C compiler: {command[0] if command else 'CC'!r} was not found. pymimalloc compiles mimalloc and its "
            "C glue when it is installed, so it needs one: on Debian or Ubuntu `sudo apt install gcc python3-dev`, "
            "on Fedora or RHEL `sudo dnf install gcc python3-devel`, on Alpine `apk add build-base python3-dev`; "
            "or set CC to the compiler to use."
        )
    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        raise BuildError(
            f"Python's C headers are missing (no Python.h in {include}). Install them: on Debian or Ubuntu "
            f"`sudo apt install python{sys.version_info[0]}.{sys.version_info[1]}-dev` (or python3-dev), on "
            "Fedora or RHEL `sudo dnf install python3-devel`."
        )


# The compiler's feature macros, as Linux names the features in /proc/cpuinfo ("flags" on x86, "Features" on
# arm64): what -march may let the compiler use. pymimalloc/_cpu.py compares them with the CPU at import.
CPU_FEATURE_MACROS = {
    # x86-64
    "__SSE__": "sse", "__SSE2__": "sse2", "__SSE3__": "pni", "__SSSE3__": "ssse3", "__SSE4_1__": "sse4_1",
    "__SSE4_2__": "sse4_2", "__SSE4A__": "sse4a", "__POPCNT__": "popcnt", "__LZCNT__": "abm", "__ABM__": "abm",
    "__BMI__": "bmi1", "__BMI2__": "bmi2", "__MOVBE__": "movbe", "__LAHF_SAHF__": "lahf_lm", "__ADX__": "adx",
    "__AVX__": "avx", "__AVX2__": "avx2", "__FMA__": "fma", "__FMA4__": "fma4", "__F16C__": "f16c",
    "__XOP__": "xop", "__TBM__": "tbm", "__AES__": "aes", "__PCLMUL__": "pclmulqdq", "__SHA__": "sha_ni",
    "__VAES__": "vaes", "__VPCLMULQDQ__": "vpclmulqdq", "__GFNI__": "gfni", "__RDRND__": "rdrand",
    "__RDSEED__": "rdseed", "__RDPID__": "rdpid", "__XSAVE__": "xsave", "__XSAVEC__": "xsavec",
    "__XSAVEOPT__": "xsaveopt", "__XSAVES__": "xsaves", "__CLFLUSHOPT__": "clflushopt", "__CLWB__": "clwb",
    "__CLZERO__": "clzero", "__FSGSBASE__": "fsgsbase", "__PRFCHW__": "3dnowprefetch", "__MOVDIRI__": "movdiri",
    "__MOVDIR64B__": "movdir64b", "__SERIALIZE__": "serialize", "__WAITPKG__": "waitpkg", "__AVXVNNI__": "avx_vnni",
    "__AVX512F__": "avx512f", "__AVX512CD__": "avx512cd", "__AVX512DQ__": "avx512dq", "__AVX512BW__": "avx512bw",
    "__AVX512VL__": "avx512vl", "__AVX512IFMA__": "avx512ifma", "__AVX512VBMI__": "avx512vbmi",
    "__AVX512VBMI2__": "avx512_vbmi2", "__AVX512VNNI__": "avx512_vnni", "__AVX512BITALG__": "avx512_bitalg",
    "__AVX512VPOPCNTDQ__": "avx512_vpopcntdq", "__AVX512BF16__": "avx512_bf16", "__AVX512FP16__": "avx512_fp16",
    "__AMX_TILE__": "amx_tile", "__AMX_INT8__": "amx_int8", "__AMX_BF16__": "amx_bf16",
    # arm64
    "__ARM_FEATURE_ATOMICS": "atomics", "__ARM_FEATURE_CRC32": "crc32", "__ARM_FEATURE_AES": "aes",
    "__ARM_FEATURE_SHA2": "sha2", "__ARM_FEATURE_SHA3": "sha3", "__ARM_FEATURE_SM3": "sm3",
    "__ARM_FEATURE_SM4": "sm4", "__ARM_FEATURE_DOTPROD": "asimddp", "__ARM_FEATURE_FP16_VECTOR_ARITHMETIC": "asimdhp",
    "__ARM_FEATURE_SVE": "sve", "__ARM_FEATURE_SVE2": "sve2", "__ARM_FEATURE_MATMUL_INT8": "i8mm",
    "__ARM_FEATURE_BF16": "bf16", "__ARM_FEATURE_JCVT": "jscvt", "__ARM_FEATURE_RCPC": "lrcpc",
    "__ARM_FEATURE_FRINT": "frint",
}


def _cpu_module() -> Any:
    """pymimalloc/_cpu.py (standard library only), loaded by path: the package cannot be imported before it is built."""
    spec = importlib.util.spec_from_file_location("_pymimalloc_cpu", HERE / "pymimalloc" / "_cpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_features(cflags: list[str]) -> list[str] | None:
    """The CPU features the compiler may use under ``cflags``, as /proc/cpuinfo names them; None if unknown.

    Read from the compiler's predefined macros (``-dM -E``), so it is what the compiler itself was told. A
    feature this machine's /proc/cpuinfo does not list is left out: the check at import never refuses a CPU
    like the one that built the module (nor trips on a name this table spells differently from the kernel).
    """
    command = [*compiler_command(), *[flag for flag in cflags if flag.startswith("-m")], "-dM", "-E", "-x", "c",
               os.devnull]
    try:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    macros = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("#define ")}
    wanted = {name for macro, name in CPU_FEATURE_MACROS.items() if macro in macros}
    here = _cpu_module().cpu_flags()
    return sorted(wanted if here is None else wanted & here)


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


def _preprocessed(header: pathlib.Path) -> str:
    """``header`` as cffi is to read it: as the C preprocessor reads it, with its constants kept.

    A header may then make declarations with a macro, as pmi_bench.h makes its patterns' enum from a table.
    ``-dD`` keeps each ``#define`` in place; cffi takes only constants, so function-like macros and
    ``#undef`` lines are left out, and so is everything of the compiler's own (its predefined macros). The
    line markers stay, so cffi's errors name the header and line.
    """
    command = [*compiler_command(), "-E", "-dD", "-undef", "-nostdinc", "-x", "c", str(header)]
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise BuildError(f"the C preprocessor could not read {header.name}:\n{proc.stderr.strip()}")
    lines, ours = [], False
    for line in proc.stdout.splitlines():
        marker = re.match(r'#\s*\d+\s+"([^"]*)"', line)
        if marker:
            ours = marker.group(1) == str(header)
        if not ours or re.match(r"#\s*(undef\b|define\s+\w+\()", line):
            continue
        lines.append(line)
    return "\n".join(lines)


def _read_cdef() -> str:
    return "\n".join(_preprocessed(CSRC / name) for name in CDEF_HEADERS)


def _includes() -> str:
    """The module's #include lines: one per cdef header, so cffi checks each declaration against it."""
    return "".join("#include <mimalloc.h>\n" if name == "mimalloc_api.h" else f'#include "{name}"\n'
                   for name in CDEF_HEADERS)


def include_dirs(root: pathlib.Path) -> list[str]:
    """Where our C finds mimalloc's headers (and, through src/, its single-unit build), its own, numpy's."""
    return [str(root / "include"), str(root / "src"), str(CSRC), _numpy_include()]


def _c_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid C string literal for ASCII text


def make_ffi(project_relative: bool = True) -> FFI:
    """The FFI builder for ``pymimalloc._mimalloc``.

    setuptools (through ``cffi_modules``) needs source paths relative to the project;
    ``ffi.compile()`` changes directory first and needs absolute ones (``project_relative=False``).
    """
    root, origin = locate_source()
    options = compile_options()
    version = mimalloc_version(root)
    info = {
        "mimalloc_version": version,
        "mimalloc_source": origin["source"],
        "mimalloc_sha256": origin["sha256"],
        "cflags": options["cflags"],
        "defines": {k: v for k, v in options["defines"]},  # type: ignore[union-attr]
        "portable": options["portable"],
        # a native build runs only on CPUs with this machine's instruction set: never publish its wheel
        "native": options["native"],
        "target": options["target"],
        # what the flags let the compiler use, checked against the CPU before the module loads (_cpu.py)
        "cpu_features": cpu_features(options["cflags"]),  # type: ignore[arg-type]
        "debug": options["debug"],
        "secure": options["secure"],
        "lto": options["lto"],
        "hot_text": options["hot_text"],
        "python": sys.version.split()[0],
        "numpy_headers": _numpy_version(),
    }
    ffibuilder = FFI()
    ffibuilder.cdef(_read_cdef())
    ffibuilder.set_source(
        "pymimalloc._mimalloc",
        _includes() +
        f"static const char pmi_build_info_json[] = {_c_string(json.dumps(info))};\n"
        "const char* pmi_build_info(void) { return pmi_build_info_json; }\n"
        f"const char* pmi_package_version(void) {{ return {_c_string(package_version())}; }}\n"
        # the compiler that compiled this, as it names itself (CC may be a wrapper such as cc or ccache)
        "#if defined(__clang__)\n"
        'const char* pmi_compiler(void) { return "clang " __clang_version__; }\n'
        "#elif defined(__GNUC__)\n"
        'const char* pmi_compiler(void) { return "gcc " __VERSION__; }\n'
        "#else\n"
        'const char* pmi_compiler(void) { return "unknown"; }\n'
        "#endif\n",
        sources=[f"csrc/{name}" if project_relative else str(CSRC / name) for name in C_SOURCES],
        # our headers and the hot-text list: an in-place rebuild after a change to one alone (python setup.py
        # build_ext --inplace, or pip install . over a build/ folder) compiled nothing before, and kept the old module
        depends=[f"csrc/{h.name}" if project_relative else str(h) for h in [*sorted(CSRC.glob("*.h")), HOT_TEXT]],
        include_dirs=include_dirs(root),
        define_macros=options["defines"],  # type: ignore[arg-type]
        extra_compile_args=options["cflags"],  # type: ignore[arg-type]
        # with LTO the code is generated at link time: the link gets the compile flags too
        extra_link_args=[*(options["cflags"] if options["lto"] else ["-fvisibility=hidden"]),  # type: ignore[list-item]
                         *([] if options["debug"] else ["-Wl,--strip-debug"]),
                         *([f"-Wl,-T,{options['hot_text_script']}"] if options["hot_text"] else [])],
        # it uses the full CPython and numpy C APIs, so it is named for this interpreter, never abi3
        py_limited_api=False,
        libraries=["pthread", "dl"],  # dl: dlsym (pmi_allocator.c), in libc itself since glibc 2.34
    )
    return ffibuilder


# ---------------------------------------------------------------------------------------------------------
# Our C, compiled with warnings
# ---------------------------------------------------------------------------------------------------------

def warning_check_command(source: pathlib.Path, root: pathlib.Path, options: dict[str, object]) -> list[str]:
    """The compiler command that checks ``source`` for warnings, with the flags, defines and include paths of
    the real build (and Python's headers, which setuptools adds there). Only our code is judged: mimalloc's
    tree, Python's and numpy's headers come in as system headers, whose warnings the compiler keeps to itself.
    """
    cflags = [flag for flag in options["cflags"] if not flag.startswith("-flto")]  # type: ignore[attr-defined]
    defines = [f"-D{name}={value}" for name, value in options["defines"]]  # type: ignore[attr-defined]
    ours, theirs = str(CSRC), [d for d in include_dirs(root) if d != str(CSRC)] + [sysconfig.get_paths()["include"]]
    return [*compiler_command(), *cflags, *defines, *WARNING_FLAGS, "-fsyntax-only", f"-I{ours}",
            *(f"-isystem{d}" for d in theirs), str(source)]


def check_warnings() -> int:
    """Compile each of our C sources with WARNING_FLAGS; print what the compiler says. 0 if it said nothing."""
    check_toolchain()
    root, _ = locate_source()
    options = compile_options()
    failed = 0
    for name in C_SOURCES:
        proc = subprocess.run(warning_check_command(CSRC / name, root, options), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        output = proc.stdout.strip()
        if proc.returncode != 0 or output:
            failed += 1
            print(f"csrc/{name}:\n{output}", file=sys.stderr)
    print(f"{len(C_SOURCES) - failed} of {len(C_SOURCES)} C sources compile without warnings under "
          f"{' '.join(WARNING_FLAGS)}", file=sys.stderr)
    return 1 if failed else 0


# setup.py names make_ffi (cffi calls it), so importing this file has no side effects.
if __name__ == "__main__":
    if sys.argv[1:] == ["--check-warnings"]:
        sys.exit(check_warnings())
    make_ffi(project_relative=False).compile(verbose=True)
