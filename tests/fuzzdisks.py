"""The two in-memory disks the filesystem fuzz tests share.

`RecordingDisk` logs every small read (at most 8 KiB: superblocks, FAT sectors, tree nodes, inodes, directory
blocks) of a clean walk, so the fuzz can mutate exactly the bytes a reader looks at. `PatchedDisk` is the base
image with a few byte ranges replaced, applied on read, so no example copies the whole image.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from pvbuild.pvgrub.blockio import MemoryDisk

RECORDED_READ_MAX = 8192


class RecordingDisk(MemoryDisk):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        if length <= RECORDED_READ_MAX:
            self.reads.append((offset, length))
        return super().read(offset, length)


class PatchedDisk(MemoryDisk):
    """The base image with the byte ranges `muts` ((offset, bytes) pairs) replaced, applied on read."""

    def __init__(self, base: bytes, muts: list[tuple[int, bytes]]) -> None:
        super().__init__(base)
        self.muts = muts

    def read(self, offset: int, length: int) -> bytes:
        data = super().read(offset, length)
        end = offset + length
        hits = [(o, b) for o, b in self.muts if o < end and o + len(b) > offset]
        if not hits:
            return data
        buf = bytearray(data)
        for o, b in hits:
            lo, hi = max(o, offset), min(o + len(b), end)
            buf[lo - offset:hi - offset] = b[lo - o:hi - o]
        return bytes(buf)


def draw_mutations(draw: Callable[[st.SearchStrategy[Any]], Any], regions: tuple[tuple[int, int], ...],
                   anywhere: bool) -> list[tuple[int, bytes]]:
    """1-6 short byte strings at offsets inside `regions` ((offset, length) pairs whose last one is the whole
    image: used alone when `anywhere`, left out otherwise), for `PatchedDisk`."""
    pool = regions[-1:] if anywhere else regions[:-1]
    out = []
    for _ in range(draw(st.integers(1, 6))):
        base, length = draw(st.sampled_from(pool))
        off = base + draw(st.integers(0, max(0, length - 1)))
        out.append((off, draw(st.binary(min_size=1, max_size=8))))
    return out


def peak_memory(work: Callable[[], object]) -> int:
    """Run `work` and return the peak of memory Python allocated meanwhile (tracemalloc), in bytes."""
    tracemalloc.start()
    try:
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak
