"""Install mimalloc as CPython's allocator at interpreter start, when ``PYMIMALLOC_INSTALL`` asks for it.

The wheel ships ``pymimalloc.pth`` into site-packages. Its one line imports this module only when the
variable is set, so an interpreter without it pays one dictionary lookup. Values: ``1`` (the "mem" and
"obj" domains), or a comma-separated list of domains such as ``mem,obj,raw``. ``0`` or empty: off.
A value that cannot be honoured is reported on stderr, and Python starts without pymimalloc's allocator.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "PYMIMALLOC_INSTALL"


def domains_from(value: str) -> tuple[str, ...]:
    """The domains a ``PYMIMALLOC_INSTALL`` value asks for (empty: none). ValueError for a bad value."""
    value = value.strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return ()
    if value in ("1", "yes", "true", "on"):
        return ("mem", "obj")
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    from .allocator import DOMAINS

    unknown = [name for name in names if name not in DOMAINS]
    if unknown or not names:
        raise ValueError(f"{VARIABLE}={value!r}: use 1, or domains from {', '.join(DOMAINS)} separated by commas")
    return names


def main() -> None:
    try:
        domains = domains_from(os.environ.get(VARIABLE, ""))
        if domains:
            from .allocator import install

            install(domains)
    except (ValueError, RuntimeError, MemoryError, ImportError) as error:
        print(f"pymimalloc: not installed as Python's allocator: {error}", file=sys.stderr)


main()
