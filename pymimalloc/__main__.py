"""``python -m pymimalloc``: how this copy was built, and a short demonstration of a heap."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from . import Heap, __version__, build_info, collect, heap_of


def demo(out: TextIO) -> None:
    """Allocate from a heap, look blocks up, and close it, printing each step."""
    with Heap() as heap:
        blocks = [heap.malloc(size) for size in (16, 256, 4096, 1 << 20)]
        blocks[0].view[:5] = b"hello"
        print(f"  allocated  {len(blocks)} blocks: {heap!r}", file=out)
        print(f"  contents   {bytes(blocks[0].view[:5])!r} at {blocks[0].address:#x}", file=out)
        print(f"  heap_of    finds the heap again: {heap_of(blocks[2]) is heap}", file=out)
        grown = heap.realloc(blocks.pop(0), 64)
        print(f"  realloc    keeps the contents: {bytes(grown.view[:5])!r}", file=out)
        kept = heap.zalloc(32)
        for block in blocks:
            block.free()
        grown.free()
    print(f"  closed     with one live block, handed to the main heap: {heap!r}", file=out)
    print(f"  the block  is still valid: {kept!r}", file=out)
    kept.free()
    collect(force=True)
    print(f"  freed      {heap!r}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pymimalloc", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print build_info() as JSON only")
    args = parser.parse_args(argv)
    if args.json:
        json.dump(build_info(), sys.stdout, indent=2)
        print()
        return 0
    print(f"pymimalloc {__version__}")
    for key, value in build_info().items():
        print(f"  {key:17} {value}")
    print("demo:")
    demo(sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
