"""Sparse files: where the data is, so that images are copied, hashed, bundled and uploaded without reading holes."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of allocated data below `size` (SEEK_DATA/SEEK_HOLE).

    A filesystem that cannot tell (EINVAL from lseek) yields the whole file as one run.
    """
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole remains
                return
            if e.errno == errno.EINVAL and pos == 0:
                yield 0, size
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end > start:
            yield start, end
        pos = end
