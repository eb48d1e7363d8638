"""Run an allocation-heavy workload under install() (at start with PYMIMALLOC_INSTALL=1, or by ``import pymimalloc;
pymimalloc.install()`` when the first argument is "install"), then print, one line per page, the functions of our
module's code that are resident away from the windows of its hot code (between the symbols pmi_hot_text_start and
pmi_hot_text_end: csrc/pmi_hot_text.ld): code that ran but is not listed there. The last line says how many pages were checked.

The kernel maps a file's pages 64 KiB around each page it faults in, so everything in a window the hot code
touches may be resident; a page beyond those windows is resident only if code on it ran. Residency comes from
/proc/self/pagemap (bit 63), addresses and names from the module's ELF section and symbol tables."""

from __future__ import annotations

import copy
import gc
import json
import pickle
import struct
import sys

if sys.argv[1:] == ["install"]:
    import pymimalloc

    pymimalloc.install()

WINDOW = 64 * 1024  # the kernel's default fault_around_bytes
PAGE = 4096
# pages seen resident just past those windows, contiguous with them (up to 2 on this machine's 6.18 kernel, where
# the region ends); code that ran away from the hot code makes a window of its own resident
SLACK = 4 * PAGE


def workload() -> None:
    data = {"users": [{"id": i, "name": "user%d" % i, "tags": ["t%d" % j for j in range(i % 7)],
                       "score": i * 0.5, "nested": {"a": [i, i + 1, None, True], "b": "x" * (i % 40)}}
                      for i in range(2000)]}
    for _ in range(3):
        json.loads(json.dumps(data))
        pickle.loads(pickle.dumps(data, 5))
        copy.deepcopy(data)
        parts = [str(i) + "x" * (i % 50) for i in range(20000)]
        "-".join(parts).split("x")
        bytearray(1 << 20)  # large blocks go to the C library
    gc.collect()


def mappings(fragment: str) -> list[tuple[int, int, str, int]]:
    """(start, end, permissions, file offset) of every mapping of the file whose path contains ``fragment``."""
    found = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fragment in fields[5]:
                start, end = (int(part, 16) for part in fields[0].split("-"))
                found.append((start, end, fields[1], int(fields[2], 16)))
    return found


def elf_sections(image: bytes) -> list[tuple[str, int, int, int, int, int]]:
    """(name, type, address, offset, size, link) of each section of a 64-bit little-endian ELF file, in order."""
    shoff, = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", image, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + i * shentsize) for i in range(shnum)]
    names_offset = headers[shstrndx][4]
    sections = []
    for name, kind, _flags, address, offset, size, link, *_ in headers:
        end = image.index(b"\0", names_offset + name)
        sections.append((image[names_offset + name:end].decode(), kind, address, offset, size, link))
    return sections


def symbols(image: bytes, sections: list[tuple[str, int, int, int, int, int]]) -> list[tuple[int, int, int, str]]:
    """(type, address, size, name) of the symbols in the symbol table (.symtab; a release build keeps it)."""
    table = [section for section in sections if section[0] == ".symtab"]
    if not table:
        return []
    _, _, _, offset, size, link = table[0]
    string_offset = sections[link][3]
    found = []
    for at in range(offset, offset + size, 24):
        name, info, _other, _index, value, length = struct.unpack_from("<IBBHQQ", image, at)
        end = image.index(b"\0", string_offset + name)
        found.append((info & 0xF, value, length, image[string_offset + name:end].decode()))
    return found


def main() -> None:
    workload()
    maps = mappings("/pymimalloc/_mimalloc.")
    path = next(line.split()[5] for line in open("/proc/self/maps") if "/pymimalloc/_mimalloc." in line)
    base = next(start for start, _end, _perms, offset in maps if offset == 0)
    text = [(start, end) for start, end, perms, _offset in maps if "x" in perms]
    assert len(text) == 1, maps
    with open(path, "rb") as f:
        image = f.read()
    table = symbols(image, elf_sections(image))
    bounds = {name: address for _kind, address, _size, name in table if name in ("pmi_hot_text_start", "pmi_hot_text_end")}
    if len(bounds) != 2:
        print("NO-HOT-TEXT")
        return
    hot_address, hot_size = bounds["pmi_hot_text_start"], bounds["pmi_hot_text_end"] - bounds["pmi_hot_text_start"]
    # the windows the hot code touches
    allowed_from = (base + hot_address) // WINDOW * WINDOW
    allowed_to = -(-(base + hot_address + hot_size) // WINDOW) * WINDOW
    start, end = text[0]
    resident = []
    with open("/proc/self/pagemap", "rb") as pagemap:
        for page in range(start, end, PAGE):
            pagemap.seek(page // PAGE * 8)
            entry, = struct.unpack("<Q", pagemap.read(8))
            if entry >> 63 and not allowed_from - SLACK <= page < allowed_to + SLACK:
                resident.append(page)
    functions = [(address, size, name) for kind, address, size, name in table if kind == 2 and size]  # STT_FUNC
    for page in resident:
        names = sorted({name for address, size, name in functions
                        if base + address < page + PAGE and base + address + size > page})
        print(f"{page - base:#x} {' '.join(names) or '?'}")
    print(f"checked {(end - start) // PAGE} pages, hot {hot_size} bytes")


main()
