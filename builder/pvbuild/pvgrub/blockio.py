"""Bounded, counted reads from a disk image.

Every byte the emulator looks at goes through `Disk.read`, so the benchmark can report how much of an image a
check touched and a corrupt structure can never make the emulator read past the image or allocate without limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import BinaryIO

from pvbuild.pvgrub.errors import Err, GrubError, ImageError

SECTOR = 512
# The largest single read any parser may ask for; larger needs are split by the caller.
MAX_READ = 64 * 1024 * 1024


class Disk:
    """A raw image opened read-only. Reads past the end return zeros only when `pad` is asked for."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._f: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed by close()/context manager
        except OSError as e:
            raise ImageError(f"cannot open {self.path}: {e.strerror}") from e
        try:
            st = os.fstat(self._f.fileno())
            if os.path.isdir(self.path):
                raise ImageError(f"{self.path} is a directory, not a disk image")
            size = st.st_size
            if size == 0 and not os.path.isfile(self.path):
                size = self._f.seek(0, os.SEEK_END)
            self.size = size
        except BaseException:
            self._f.close()
            raise
        self.bytes_read = 0

    @classmethod
    def from_bytes(cls, data: bytes) -> MemoryDisk:
        return MemoryDisk(data)

    def read(self, offset: int, length: int) -> bytes:
        """Read exactly `length` bytes at `offset`; raises GRUB's read error past the end of the image."""
        if offset < 0 or length < 0 or length > MAX_READ:
            raise GrubError(Err.READ, f"bad read of {length} bytes at {offset}")
        if offset + length > self.size:
            raise GrubError(Err.READ, f"read of {length} bytes at byte {offset} is past the end of the image "
                                      f"({self.size} bytes)")
        if length == 0:
            return b""
        self._f.seek(offset)
        data = self._f.read(length)
        self.bytes_read += len(data)
        if len(data) != length:
            raise GrubError(Err.READ, f"short read at byte {offset}")
        return data

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Disk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryDisk(Disk):
    """An image held in memory: for fuzzing and unit tests of parsers."""

    def __init__(self, data: bytes) -> None:
        self.path = "<memory>"
        self._data = data
        self.size = len(data)
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or length > MAX_READ:
            raise GrubError(Err.READ, f"bad read of {length} bytes at {offset}")
        if offset + length > self.size:
            raise GrubError(Err.READ, f"read of {length} bytes at byte {offset} is past the end of the image "
                                      f"({self.size} bytes)")
        self.bytes_read += length
        return self._data[offset:offset + length]

    def close(self) -> None:
        pass


@dataclass
class Volume:
    """A byte range of a disk: the whole disk (`(hd0)`) or one partition (`(hd0,N)`).

    `part_type` is the MBR partition type byte (None for a whole disk or a GPT partition), which GRUB's ext2
    driver checks before it mounts.
    """

    disk: Disk
    start: int  # bytes
    length: int  # bytes
    part_type: int | None = None
    name: str = "(hd0)"
    _cache: dict[int, bytes] = field(default_factory=dict, repr=False)

    def read(self, offset: int, length: int) -> bytes:
        """Read inside the volume. GRUB refuses reads outside the partition (Error 24), so do we."""
        if offset < 0 or length < 0 or offset + length > self.length:
            raise GrubError(Err.OUTSIDE_PART, f"read of {length} bytes at {offset} outside {self.name} "
                                              f"({self.length} bytes)")
        return self.disk.read(self.start + offset, length)

    def read_block(self, index: int, block_size: int) -> bytes:
        """Read one filesystem block, cached (directory walks reread the same blocks)."""
        key = index * block_size
        cached = self._cache.get(key)
        if cached is not None and len(cached) == block_size:
            return cached
        data = self.read(key, block_size)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = data
        return data
