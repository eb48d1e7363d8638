# The compiled module (cffi, built from build_ffi.py): its C API is declared in csrc/*.h, not here.
# Only pymimalloc._core imports it.
from typing import Any

ffi: Any
lib: Any
