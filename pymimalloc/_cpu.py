"""Refuse a compiled module built for instructions this CPU lacks, before it is loaded.

A default build uses ``-march=native``: the compiler may use every instruction of the machine that built
it. pip's wheel cache (or a wheelhouse shared between machines) can hand that wheel to another CPU, where
it would die of SIGILL. It would die while loading: mimalloc's constructor runs at ``dlopen`` and is
compiled with the same flags (on an AVX2 build machine, ``mi_option_init`` already uses AVX2). So the check
cannot run inside the module. It reads the build info that build_ffi.py compiled into the module (a JSON
string; its ``cpu_features`` lists what the flags let the compiler use, as /proc/cpuinfo names them) from
the file itself, and compares it with this CPU's /proc/cpuinfo.

This module uses the standard library only: ``pymimalloc/_startup.py`` runs it at interpreter start
without importing the package.
"""

# no `from __future__ import annotations`: at start it would load __future__ into every process (16 KiB)

import os

__all__ = ["BuildTarget", "cpu_flags", "read_build_target", "missing_features", "refusal", "check_module_file",
           "refuse_unsupported_cpu"]

# build_ffi.py compiles the build info in as a NUL-terminated JSON object whose first key is mimalloc_version.
# It is read here with plain byte searches, not json: at start this runs before the program imports anything.
_BUILD_INFO_START = b'{"mimalloc_version": '
_MODULE = "pymimalloc._mimalloc"


class BuildTarget:
    """What the compiled module was built for: ``features`` it may use (None: not recorded), ``native``, ``target``."""

    def __init__(self, features: list[str] | None, native: bool, target: str) -> None:
        self.features, self.native, self.target = features, native, target


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str] | None:
    """This CPU's feature names as Linux lists them (the first processor's flags), or None if unreadable."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return None


def _json_value(info: bytes, key: str) -> bytes | None:
    """The raw JSON text of ``key``'s value in ``info`` (a flat object written by json.dumps), or None."""
    marker = f'"{key}": '.encode()
    at = info.find(marker)
    if at < 0:
        return None
    at += len(marker)
    if info.startswith(b"[", at):
        return info[at:info.find(b"]", at) + 1]
    if info.startswith(b'"', at):
        return info[at:info.find(b'"', at + 1) + 1]
    end = min((i for i in (info.find(b",", at), info.find(b"}", at)) if i >= 0), default=len(info))
    return info[at:end]


# Bytes read at a time. Read whole, the ~400 KiB module was one block that glibc mapped and unmapped, and an unmapped
# block raises glibc's mmap threshold for the rest of the process. Read 64 KiB at a time, glibc's heap kept 252 KiB
# resident for good (/proc/self/status, RssAnon, after the read); 4 KiB at a time it keeps none, and peaks lowest.
_CHUNK = 4 * 1024


def _build_info(path: str, chunk: int = _CHUNK) -> bytes | None:
    """The build info's JSON bytes (without its NUL), read ``chunk`` bytes at a time; None if absent or unreadable."""
    carry = len(_BUILD_INFO_START) - 1  # a start split between two chunks is found in the next
    try:
        with open(path, "rb") as f:
            data = b""
            while (start := data.find(_BUILD_INFO_START)) < 0:
                more = f.read(chunk)
                if not more:
                    return None
                data = data[-carry:] + more
            data = data[start:]
            while (end := data.find(b"\0")) < 0:
                more = f.read(chunk)
                if not more:
                    return None
                data += more
            return data[:end]
    except OSError:
        return None


def read_build_target(path: str) -> BuildTarget | None:
    """What the compiled module at ``path`` was built for, read from the file without loading it."""
    info = _build_info(path)
    if info is None:
        return None
    features = _json_value(info, "cpu_features")
    names = None
    if features is not None and features.startswith(b"["):
        names = [name.strip().strip(b'"').decode() for name in features[1:-1].split(b",") if name.strip()]
    target = _json_value(info, "target") or b'""'
    return BuildTarget(names, _json_value(info, "native") == b"true", target.strip(b'"').decode())


def missing_features(build: BuildTarget, available: set[str] | None) -> list[str]:
    """The features the build needs that ``available`` lacks (none when either side is unknown)."""
    if available is None or build.features is None:
        return []
    return [name for name in build.features if name not in available]


def refusal(build: BuildTarget, missing: list[str], path: str) -> ImportError:
    """The ImportError that says which features are missing, why that happened and what to do."""
    names = ", ".join(missing)
    if build.native:
        return ImportError(
            f"pymimalloc's compiled module ({path}) was built with -march=native on a CPU that has {names}, "
            "and this CPU does not: loading it would crash with an illegal instruction. The wheel was built on "
            "another machine, usually taken from pip's wheel cache (a shared home folder or CI cache). Build "
            "it on this machine: `pip install --no-cache-dir --force-reinstall pymimalloc` (or the sdist or "
            "checkout you installed from); for a wheel that runs on every CPU of the family, build it with "
            "PYMIMALLOC_PORTABLE=1."
        )
    return ImportError(
        f"pymimalloc's compiled module ({path}) was built for -march={build.target}, which needs {names}, "
        "and this CPU does not have them: loading it would crash with an illegal instruction. Build it on "
        "this machine without PYMIMALLOC_PORTABLE (`pip install --no-cache-dir --force-reinstall pymimalloc`)."
    )


def check_module_file(path: str, cpuinfo: str = "/proc/cpuinfo") -> ImportError | None:
    """The refusal for the compiled module at ``path`` on this CPU, or None if it may be loaded."""
    build = read_build_target(path)
    if build is None:
        return None
    missing = missing_features(build, cpu_flags(cpuinfo))
    return refusal(build, missing, path) if missing else None


def refuse_unsupported_cpu() -> None:
    """Raise ImportError if the package's compiled module needs CPU features this CPU lacks.

    Does nothing if the module cannot be found (``_core`` explains that) or this CPU's features are unknown.
    """
    import importlib.util
    import sys

    module = sys.modules.get(_MODULE)
    spec = None if module is not None else importlib.util.find_spec(_MODULE)
    path = getattr(module, "__file__", None) if module is not None else (spec.origin if spec else None)
    if path and os.path.isfile(path):
        error = check_module_file(path)
        if error is not None:
            raise error
