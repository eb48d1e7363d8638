"""Run test modules in a process whose kernel refuses membarrier(2) (a seccomp filter, as some sandboxes have):
pymimalloc must choose its fallback protocol (csrc/pmi_heap.h: no thread owns a stripe; every glue call writes
the shared stripe with locked instructions) and everything must still hold. The filter is set before pymimalloc is
imported (the program runs itself again under it) and is inherited by every process the tests start. Arguments:
the test files, then pytest's options."""

import ctypes
import errno
import os
import platform
import struct
import sys

import pytest

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
AUDIT_ARCH_X86_64, NR_MEMBARRIER_X86_64 = 0xC000003E, 324
LD_ABS_W, JEQ_K, RET_K = 0x20, 0x15, 0x06
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000


def refuse_membarrier() -> None:
    """membarrier(2) fails with EPERM from now on, in this process and every process it starts."""
    program = [
        (LD_ABS_W, 0, 0, 4),                        # the architecture
        (JEQ_K, 0, 3, AUDIT_ARCH_X86_64),           # another: allow
        (LD_ABS_W, 0, 0, 0),                        # the system call's number
        (JEQ_K, 0, 1, NR_MEMBARRIER_X86_64),
        (RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
        (RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *row) for row in program))

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    fprog = Program(len(program), ctypes.addressof(filters))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter refused")
    assert membarrier_refused()


def membarrier_refused() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(NR_MEMBARRIER_X86_64, 0, 0, 0) == -1 and ctypes.get_errno() == errno.EPERM


if __name__ == "__main__":
    assert platform.machine() == "x86_64", "the filter names x86-64's system call"
    if os.environ.get("PYMIMALLOC_EXPECT_SEQ_CST") != "1":
        # With PYMIMALLOC_INSTALL=1 the interpreter imported pymimalloc at start, before any filter: so the filter
        # is set, and the same command run again under it (the .pth then imports pymimalloc under it too)
        refuse_membarrier()
        os.environ["PYMIMALLOC_EXPECT_SEQ_CST"] = "1"  # test_glue_protocol.py then expects the fallback
        os.execv(sys.executable, sys.orig_argv)
    assert membarrier_refused()
    import pymimalloc
    from pymimalloc import _core

    assert _core.fence_mode() == "seq_cst", _core.fence_mode()
    assert pymimalloc.Heap().malloc(8)  # the glue works at all
    sys.exit(pytest.main(sys.argv[1:]))
