"""mimalloc's options as a mapping: read, set and temporarily override them by name.

Names and their order come from the compiled library (``mi_options_print_out``), never typed in by hand;
deprecated options are left out. Options are process-wide. Sizes marked "KiB" by mimalloc
(``reserve_os_memory``, ``arena_reserve``, ``minimal_purge_size``, ``arena_max_object_size``) are in KiB.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from . import _core
from ._process import ProcessLocal

__all__ = ["Options", "options", "PRESETS", "REFUSED"]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1

#: Named option sets, measured in benchmarks/ (docs/benchmarks.md).
#: "fifo": ``page_full_retain=-1`` stops mimalloc v3.4.3 from abandoning full pages of medium blocks
#: (over 10 KiB) to the arena and reclaiming them on free, which costs a clock read and, once the purge
#: delay expires, page faults on every page turnover. It halves the cost of a FIFO ring of 16-256 KiB
#: blocks and was neutral or better on the other patterns.
PRESETS: dict[str, dict[str, int]] = {"fifo": {"page_full_retain": -1}}

#: Options that break mimalloc v3.4.3 inside a Python process, with the only value pymimalloc accepts and
#: why (read from csrc/pmi_heap.c's table). Setting another value raises ValueError; one set through the
#: environment (``MIMALLOC_<NAME>``) is put back when mimalloc starts, on every path that starts it, with a
#: RuntimeWarning (or, at interpreter start under ``PYMIMALLOC_INSTALL``, the same message on stderr).
REFUSED: dict[str, tuple[int, str]] = _core.refused_options()


def _read_names() -> dict[str, int]:
    text = _core.options_text()
    names = re.findall(r"^option '(\w+)':", text, flags=re.MULTILINE)
    return {name: index for index, name in enumerate(names) if not name.startswith("deprecated")}




class Options(ProcessLocal, Mapping[str, int]):
    """Every non-deprecated ``mi_option_*``, by name without the prefix (``purge_delay``, ...)."""

    _unshareable_why = "it is the process's one set of mimalloc options; use dict(options)"

    def __init__(self) -> None:
        self._index = _read_names()
        #: the values at import: mimalloc's compiled defaults, pymimalloc's own two (``allow_thp`` 0 and ``arena_reserve``
        #: 65536 KiB, csrc/pmi_mimalloc.c), and whatever MIMALLOC_* environment variables set
        self.defaults: Mapping[str, int] = MappingProxyType({name: self[name] for name in self._index})

    def _option(self, name: str) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise KeyError(self._unknown(name)) from None

    def _unknown(self, name: object) -> str:
        """Why ``name`` is refused: the closest name if one is close (a typo), else every name."""
        import difflib  # only for this message: not loaded with the options

        close = difflib.get_close_matches(name, self._index, n=1) if isinstance(name, str) else []
        if close:
            return f"{name!r} is not a mimalloc option; did you mean {close[0]!r}?"
        return f"{name!r} is not a mimalloc option; the options are: {', '.join(self._index)}"

    def __getitem__(self, name: str) -> int:
        return _core.option_get(self._option(name))

    def _checked(self, name: str, value: object) -> tuple[int, int]:
        """(index, value) of a setting that may be made: KeyError for an unknown name, TypeError for a non-int
        value, ValueError out of range or refused."""
        option = self._option(name)
        if not isinstance(value, int):  # bool is accepted: options such as show_errors are on/off
            raise TypeError(f"option {name!r} takes an int, not {type(value).__name__}")
        if not _LONG_MIN <= value <= _LONG_MAX:
            raise ValueError(f"option {name!r}: {value} does not fit in a C long")
        why = _core.option_refusal(option, int(value))  # MIMALLOC_MAX_VABITS is refused at import too (_core.py)
        if why is not None:
            allowed = f"; only {REFUSED[name][0]} is allowed" if name in REFUSED else ""
            raise ValueError(f"pymimalloc refuses option {name!r} = {value}: {why}{allowed}")
        return option, int(value)

    def __setitem__(self, name: str, value: int) -> None:
        """Set an option. KeyError for an unknown name, TypeError for a non-int value, ValueError for a value outside a
        C long or one pymimalloc refuses. Other values are mimalloc's to read as it reads them: it stores what it is
        given (it reads back as set) and clamps where it uses it (a negative size, such as ``arena_reserve``, is 0)."""
        _core.option_set(*self._checked(name, value))

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def override(self, **values: int) -> contextlib.AbstractContextManager[Options]:
        """Set options for the ``with`` block and restore the previous values on exit, even on error or interrupt.

        All names and values are checked here, before any is set. The block is single-use; entering sets all
        the options in one call and leaving puts them all back in one (a C type), so a KeyboardInterrupt
        cannot leave some set.
        """
        checked = [self._checked(name, value) for name, value in values.items()]
        return _core.OptionsScope(self, tuple(index for index, _ in checked), tuple(value for _, value in checked))

    def preset(self, name: str) -> contextlib.AbstractContextManager[Options]:
        """``with options.preset("fifo"):`` applies a named set from :data:`PRESETS` for the block.

        mimalloc reads these options when a thread first allocates from a heap, so create the heap (and
        make each thread's first allocation from it) inside the block. KeyError for an unknown name.
        """
        try:
            values = PRESETS[name]
        except KeyError:
            raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
        return self.override(**values)

    def __repr__(self) -> str:
        return f"<pymimalloc.options {dict(self)!r}>"


options = Options()
