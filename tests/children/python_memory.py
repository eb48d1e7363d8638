"""What the allocator_* children share: whose memory an object is in, and CPython's allocator functions through
ctypes. usable_size is 0 for an address outside every mimalloc page, and the hook's blocks are in pymimalloc's
own mimalloc. Importing it silences Python 3.12+'s warning at every fork of a threaded process: these children
fork threaded processes on purpose."""

import ctypes
import warnings

import pymimalloc

warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)


def in_mimalloc_at(address: int) -> bool:
    try:
        return pymimalloc.usable_size(address) > 0
    except ValueError:  # "not an address of a block allocated by mimalloc"
        return False


def in_mimalloc(obj: object) -> bool:
    return in_mimalloc_at(id(obj))


api = ctypes.pythonapi
for name in ("PyMem_Malloc", "PyObject_Malloc", "PyMem_RawMalloc"):
    getattr(api, name).restype = ctypes.c_void_p
    getattr(api, name).argtypes = [ctypes.c_size_t]
for name in ("PyMem_Calloc", "PyObject_Calloc", "PyMem_RawCalloc"):
    getattr(api, name).restype = ctypes.c_void_p
    getattr(api, name).argtypes = [ctypes.c_size_t, ctypes.c_size_t]
for name in ("PyMem_Realloc", "PyObject_Realloc", "PyMem_RawRealloc"):
    getattr(api, name).restype = ctypes.c_void_p
    getattr(api, name).argtypes = [ctypes.c_void_p, ctypes.c_size_t]
for name in ("PyMem_Free", "PyObject_Free", "PyMem_RawFree"):
    getattr(api, name).restype = None
    getattr(api, name).argtypes = [ctypes.c_void_p]
