"""Parallel gzip that writes one standard gzip member, the way pigz does.

ec2-bundle-image runs `gzip -9` on one core, and that is where a bundle spends its time. Deflate blocks can be
compressed independently as long as each one may still refer back to the 32 KiB that precede it: so the input is
cut into blocks, each block is compressed in a thread pool (zlib releases the GIL) as a raw deflate stream primed
with the previous 32 KiB of input as its dictionary, every block but the last ends with a sync flush (a byte-aligned
empty stored block, never the final-block bit), the last with a finish, and the pieces are concatenated in order
between the gzip header and the CRC-32/ISIZE trailer. The result is one ordinary gzip member that `gunzip`, Python's
gzip and the EC2 unbundler read like any other; it is within a fraction of a percent of zlib's size at the same
level.

The output depends only on the input bytes, the level and the block size: not on how the input is split into
`write()` calls, nor on the number of workers, nor on scheduling. Memory is bounded: at most `max_pending` blocks
are in flight, and `write()` waits for the oldest one when the pool falls behind.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

DEFAULT_BLOCK_SIZE = 128 * 1024  # pigz's default; smaller blocks let the Huffman tables adapt more often
WINDOW = 32 * 1024  # deflate's maximum match distance: all a block can need from the input before it
MAGIC = b"\x1f\x8b"
OS_UNIX = 3
MEM_LEVEL = 8  # zlib's default, as gzip and compressobj(9, DEFLATED, 31) use


def gzip_header(level: int) -> bytes:
    """The 10-byte header zlib writes for `compressobj(level, DEFLATED, 31)`, which is also `gzip -n`'s:
    deflate, no flags, mtime 0, XFL 2 at level 9 and 4 at levels 0-1 (zlib's rule), OS 3 (Unix)."""
    xfl = 2 if level == 9 else 4 if level < 2 else 0
    return MAGIC + bytes([zlib.DEFLATED, 0]) + b"\0\0\0\0" + bytes([xfl, OS_UNIX])


def _deflate_block(data: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    """One block as raw deflate: primed with the input that precedes it, ended byte-aligned (sync) or final."""
    if dictionary:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, dictionary)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY)
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ParallelGzipWriter:
    """A write-only gzip stream whose compressed bytes go to `sink`, in order, as blocks complete.

    Use it as a context manager: a clean exit writes the last block and the trailer; an exception abandons the
    stream (the pending blocks are cancelled and nothing more is sent to `sink`).
    """

    def __init__(self, sink: Callable[[bytes], object], *, level: int = 9, block_size: int = DEFAULT_BLOCK_SIZE,
                 workers: int | None = None, max_pending: int | None = None) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level {level}: must be 0-9")
        if block_size < 1:
            raise ValueError(f"block size {block_size}: must be positive")
        self._workers = max(1, workers if workers is not None else os.cpu_count() or 1)
        # Four blocks per worker (30-40 ms of level-9 work each at 128 KiB): slack for when this thread is
        # scheduled late on a busy machine, and still only a few MiB in flight.
        self._max_pending = max(1, max_pending if max_pending is not None else 4 * self._workers)
        self._sink = sink
        self._level = level
        self._block_size = block_size
        self._buf = bytearray()
        self._window = b""  # the last WINDOW bytes of input before the block in `_buf`
        self._crc = 0
        self._size = 0
        self._pending: deque[Future[bytes]] = deque()
        self._closed = False
        self.compressed_size = 0
        self._emit(gzip_header(level))
        # One worker compresses inline: a pool would only add a thread switch per block.
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="pgzip") if self._workers > 1 else None

    # -------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed gzip stream")
        n = len(data)
        if not n:
            return 0
        self._crc = zlib.crc32(data, self._crc)
        self._size += n
        self._buf += data
        # A full block is sent only once more input follows it: the stream's last block must be the one that
        # ends with the final-block bit, so a full block is held back until it is known not to be the last.
        start = 0
        with memoryview(self._buf) as view:
            while len(view) - start > self._block_size:
                self._submit(bytes(view[start:start + self._block_size]), last=False)
                start += self._block_size
        if start:
            del self._buf[:start]
        return n

    def _submit(self, block: bytes, *, last: bool) -> None:
        dictionary = self._window
        self._window = (dictionary + block)[-WINDOW:] if len(block) < WINDOW else block[-WINDOW:]
        if self._pool is None:
            self._emit(_deflate_block(block, dictionary, self._level, last))
            return
        while len(self._pending) >= self._max_pending:
            self._emit(self._pending.popleft().result())
        self._pending.append(self._pool.submit(_deflate_block, block, dictionary, self._level, last))

    def _emit(self, data: bytes) -> None:
        if data:
            self.compressed_size += len(data)
            self._sink(data)

    # -------------------------------------------------------------- ending

    def close(self) -> None:
        """Compress what is left, wait for every block, write the trailer (CRC-32 and size mod 2**32)."""
        if self._closed:
            return
        try:
            self._submit(bytes(self._buf), last=True)
            self._buf = bytearray()
            while self._pending:
                self._emit(self._pending.popleft().result())
            self._emit(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        except BaseException:
            self.abort()
            raise
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown()

    def abort(self) -> None:
        """Abandon the stream: cancel what has not started, wait for what has, send nothing more."""
        self._closed = True
        self._pending.clear()
        self._buf = bytearray()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def size(self) -> int:
        """Uncompressed bytes written so far."""
        return self._size

    @property
    def crc32(self) -> int:
        return self._crc

    def __enter__(self) -> ParallelGzipWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def compress(data: bytes, *, level: int = 9, block_size: int = DEFAULT_BLOCK_SIZE, workers: int | None = None) -> bytes:
    """One gzip member of `data`, compressed in parallel (the whole output in memory: for small inputs and tests)."""
    out: list[bytes] = []
    with ParallelGzipWriter(out.append, level=level, block_size=block_size, workers=workers) as gz:
        gz.write(data)
    return b"".join(out)
