"""Bounded, streaming decompression of kernel payloads and initrd members.

Every format a Linux kernel or initramfs can be compressed with is recognised by its magic (`detect`). All
of them except LZO can be decompressed here, and every decompression is bounded: it never produces more than
`limit` bytes (a corrupt or hostile stream cannot exhaust memory), it can stop as soon as a wanted prefix
exists (`stop_after`: the kernel inspector only needs the ELF headers and notes, not 60 MB of vmlinux), and it
reports how many input bytes one member consumed, which the initrd inspector needs to walk a concatenation
of archives the way the kernel's `unpack_to_rootfs` does.

Magics (Linux `lib/decompress.c` and Xen `xg_dom_bzimageloader.c` xc_dom_probe_bzimage_kernel, lines
860-935): gzip 1F 8B; bzip2 "BZh"; xz FD "7zXZ" 00; lzma 5D 00 00 (the lzma-alone header with the
properties byte 0x5D Linux always writes, then the little-endian dictionary size); lzo 89 "LZO" 00; lz4
legacy 02 21 4C 18 (the only lz4 container Linux's unlz4 and Xen read) and lz4 frame 04 22 4D 18; zstd
28 B5 2F FD.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import lz4.block  # type: ignore[import-untyped]
import lz4.frame  # type: ignore[import-untyped]
import zstandard

FORMATS: tuple[str, ...] = ("none", "gzip", "bzip2", "xz", "lzma", "lzo", "lz4", "zstd")

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
LZMA_MAGIC = b"\x5d\x00\x00"
LZO_MAGIC = b"\x89LZO\x00"
LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"
LZ4_FRAME_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# The order is irrelevant (no magic is a prefix of another) but follows Xen's probe order.
_MAGICS: tuple[tuple[bytes, str], ...] = (
    (GZIP_MAGIC, "gzip"),
    (BZIP2_MAGIC, "bzip2"),
    (XZ_MAGIC, "xz"),
    (ZSTD_MAGIC, "zstd"),
    (LZMA_MAGIC, "lzma"),
    (LZO_MAGIC, "lzo"),
    (LZ4_LEGACY_MAGIC, "lz4"),
    (LZ4_FRAME_MAGIC, "lz4"),
)

# lz4 legacy container: every block decompresses to at most 8 MiB (lz4's LEGACY_BLOCKSIZE; Linux
# lib/decompress_unlz4.c uncomp_chunksize).
LZ4_LEGACY_BLOCK = 8 * 1024 * 1024
# LZ4_compressBound(8 MiB): a legacy block header larger than this is corrupt.
LZ4_LEGACY_MAX_CHUNK = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK // 255 + 16
# Xen's LZMA_BLOCK_SIZE (xg_dom_bzimageloader.c:274): the memory limit its xz and lzma decoders get. Also
# keeps a hostile lzma-alone header (dictionary size up to 4 GiB) from allocating without bound.
LZMA_MEMLIMIT = 256 * 1024 * 1024
# zstd: refuse windows larger than 128 MiB (zstd's own default limit for decoders is 128 MiB too).
ZSTD_MAX_WINDOW = 1 << 27

_CHUNK = 1 << 20  # output produced per step
_IN_CHUNK = 1 << 16  # input fed per step to the streaming decoders


class _Streaming(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class DecompressError(Exception):
    """The stream is corrupt, truncated, or of a format that cannot be decompressed here."""


class OutputLimitExceeded(DecompressError):
    """Decompressing would produce more than the caller's limit."""


class UnsupportedFormat(DecompressError):
    """A format recognised by its magic that this module cannot decompress (lzo) or an unknown name."""


def detect(data: bytes | memoryview) -> str:
    """The compression format of `data` by its magic: one of `FORMATS` ("none" when nothing matches)."""
    head = bytes(data[:6])
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return "none"


def lz4_container(data: bytes | memoryview) -> str | None:
    """"legacy" or "frame" for an lz4 stream (Linux and Xen read only the legacy container), else None."""
    head = bytes(data[:4])
    if head == LZ4_LEGACY_MAGIC:
        return "legacy"
    if head == LZ4_FRAME_MAGIC:
        return "frame"
    return None


@dataclass(frozen=True)
class Member:
    """The result of decompressing one member (one gzip member, one xz stream, one zstd frame, ...).

    `consumed` is how many input bytes the member occupied, when the decoder says so (None when it stopped
    early, before the member's end). `complete` is False when `stop_after` ended the work early.
    """

    data: bytes
    consumed: int | None
    complete: bool


class MemberReader:
    """A bounded file-like reader over the decompressed output of the member at the start of `data`.

    `read(n)` returns up to n bytes (fewer only at the end of the member); `skip(n)` discards without
    keeping. The total output never exceeds `limit` (OutputLimitExceeded). After the end, `consumed` is the
    number of input bytes the member used (None if unknown). Errors are DecompressError.
    """

    def __init__(self, data: bytes | memoryview, fmt: str, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self._data = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
        self.fmt = fmt
        self.limit = limit
        self.total_out = 0
        self.consumed: int | None = None
        self.eof = False
        self._buf = bytearray()
        self._want: int | None = None  # how much the current read still needs (None: everything)
        self._gen = self._generator()

    # -- public API ------------------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        while len(self._buf) < n and not self.eof:
            self._want = n - len(self._buf)
            self._fill()
        self._want = None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def skip(self, n: int) -> int:
        skipped = 0
        while skipped < n:
            if not self._buf:
                if self.eof:
                    break
                self._fill()
                continue
            take = min(n - skipped, len(self._buf))
            del self._buf[:take]
            skipped += take
        return skipped

    def read_all(self) -> bytes:
        while not self.eof:
            self._fill()
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def at_end(self) -> bool:
        """True when no output is left (fills the buffer to find out)."""
        while not self._buf and not self.eof:
            self._fill()
        return not self._buf and self.eof

    # -- internals -----------------------------------------------------------------------------------
    def _fill(self) -> None:
        try:
            chunk = next(self._gen)
        except StopIteration:
            self.eof = True
            return
        except DecompressError:
            raise
        except (zlib.error, OSError, EOFError, lzma.LZMAError, lz4.block.LZ4BlockError, zstandard.ZstdError,
                RuntimeError, ValueError, MemoryError, struct.error) as e:
            raise DecompressError(f"{self.fmt}: {e}") from e
        self.total_out += len(chunk)
        if self.total_out > self.limit:
            raise OutputLimitExceeded(f"{self.fmt}: output exceeds the limit of {self.limit} bytes")
        self._buf += chunk

    def _room(self) -> int:
        """How much a decoder may produce in one step: a chunk, what the current read still needs, or one
        byte past the limit (to detect that the output exceeds it)."""
        room = min(_CHUNK, self.limit - self.total_out + 1)
        if self._want is not None:
            room = min(room, self._want)
        return max(1, room)

    def _generator(self) -> Iterator[bytes]:
        makers: dict[str, Callable[[], Iterator[bytes]]] = {
            "none": self._gen_none,
            "gzip": self._gen_gzip,
            "bzip2": self._gen_bzip2,
            "xz": lambda: self._gen_lzma(lzma.FORMAT_XZ),
            "lzma": lambda: self._gen_lzma(lzma.FORMAT_ALONE),
            "lz4": self._gen_lz4,
            "zstd": self._gen_zstd,
        }
        if self.fmt == "lzo":
            raise UnsupportedFormat("lzo: recognised but not decompressible here")
        maker = makers.get(self.fmt)
        if maker is None:
            raise UnsupportedFormat(f"unknown compression format {self.fmt!r}")
        return maker()

    def _gen_none(self) -> Iterator[bytes]:
        pos = 0
        while pos < len(self._data):
            take = self._room()
            yield bytes(self._data[pos : pos + take])
            pos += take
        self.consumed = len(self._data)

    def _gen_streaming(self, dec: _Streaming, *, zlib_style: bool = False) -> Iterator[bytes]:
        """Drive a decoder with the `decompress(data, max_length)`, `eof`, `unused_data` protocol.

        zlib's decompress objects keep input they could not use in `unconsumed_tail`; bz2, lzma and lz4
        frame decoders keep it internally and say `needs_input`.
        """
        data = self._data
        pos = 0
        stalled = 0
        while True:
            tail = bytes(getattr(dec, "unconsumed_tail", b"")) if zlib_style else b""
            if zlib_style:
                if tail:
                    feed = tail
                else:
                    if pos >= len(data):
                        raise DecompressError(f"{self.fmt}: unexpected end of input")
                    feed = bytes(data[pos : pos + _IN_CHUNK])
                    pos += len(feed)
            elif getattr(dec, "needs_input", True):
                if pos >= len(data):
                    raise DecompressError(f"{self.fmt}: unexpected end of input")
                feed = bytes(data[pos : pos + _IN_CHUNK])
                pos += len(feed)
            else:
                feed = b""
            out = dec.decompress(feed, self._room())
            if dec.eof:
                if out:
                    yield out
                # Everything fed past the end is in unused_data (zlib may leave a copy of it in
                # unconsumed_tail too when max_length stopped it just before the end).
                self.consumed = pos - len(dec.unused_data or b"")
                return
            if out:
                stalled = 0
                yield out
            elif not feed:
                stalled += 1
                if stalled > 1000:
                    raise DecompressError(f"{self.fmt}: decoder makes no progress")

    def _gen_gzip(self) -> Iterator[bytes]:
        return self._gen_streaming(zlib.decompressobj(16 + zlib.MAX_WBITS), zlib_style=True)

    def _gen_bzip2(self) -> Iterator[bytes]:
        return self._gen_streaming(bz2.BZ2Decompressor())

    def _gen_lzma(self, fmt: int) -> Iterator[bytes]:
        return self._gen_streaming(lzma.LZMADecompressor(format=fmt, memlimit=LZMA_MEMLIMIT))

    def _gen_lz4(self) -> Iterator[bytes]:
        head = bytes(self._data[:4])
        if head == LZ4_FRAME_MAGIC:
            return self._gen_streaming(lz4.frame.LZ4FrameDecompressor())
        if head == LZ4_LEGACY_MAGIC:
            return self._gen_lz4_legacy()
        raise DecompressError("lz4: no lz4 magic")

    def _gen_lz4_legacy(self) -> Iterator[bytes]:
        """The lz4 legacy container (`lz4 -l`): magic, then blocks of (le32 size, lz4 block <= 8 MiB out).

        The container has no end marker. Linux (lib/decompress_unlz4.c) and Xen (xc_try_lz4_decode,
        xg_dom_bzimageloader.c:673-712) read blocks until the input is used up and skip a repeated magic.
        Here the member also ends at a block size that cannot be a block (0 or above the lz4 bound of 8 MiB),
        which is where the `lz4` tool stops too, so that `consumed` points at what follows.
        """
        data = self._data
        pos = 4
        while True:
            if len(data) - pos < 4:
                break
            (size,) = struct.unpack_from("<I", data, pos)
            if size == 0x184C2102:
                pos += 4
                continue
            if size == 0 or size > LZ4_LEGACY_MAX_CHUNK:
                break
            if size > len(data) - pos - 4:
                raise DecompressError("lz4: truncated block")
            block = bytes(data[pos + 4 : pos + 4 + size])
            room = min(LZ4_LEGACY_BLOCK, self.limit - self.total_out + 1)
            try:
                out = lz4.block.decompress(block, uncompressed_size=max(1, room))
            except lz4.block.LZ4BlockError as e:
                if room < LZ4_LEGACY_BLOCK:
                    raise OutputLimitExceeded(f"lz4: output exceeds the limit of {self.limit} bytes") from e
                raise DecompressError(f"lz4: corrupt block at input offset {pos}") from e
            pos += 4 + size
            if out:
                yield out
        self.consumed = pos

    def _gen_zstd(self) -> Iterator[bytes]:
        length = zstd_frame_length(self._data)
        dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        reader = dctx.stream_reader(self._data[:length], read_across_frames=False)
        while True:
            out = reader.read(self._room())
            if not out:
                break
            yield out
        self.consumed = length


def zstd_frame_length(data: bytes | memoryview) -> int:
    """The byte length of the zstd frame at the start of `data` (RFC 8878 §3.1.1), from its block headers."""
    mv = memoryview(data)
    if bytes(mv[:4]) != ZSTD_MAGIC:
        raise DecompressError("zstd: no frame magic")
    if len(mv) < 5:
        raise DecompressError("zstd: truncated frame header")
    fhd = mv[4]
    fcs_flag = fhd >> 6
    single_segment = (fhd >> 5) & 1
    if (fhd >> 3) & 1:
        raise DecompressError("zstd: reserved frame header bit set")
    checksum = (fhd >> 2) & 1
    dict_id_size = (0, 1, 2, 4)[fhd & 3]
    fcs_size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    pos = 5 + (0 if single_segment else 1) + dict_id_size + fcs_size
    while True:
        if pos + 3 > len(mv):
            raise DecompressError("zstd: truncated block header")
        bh = mv[pos] | (mv[pos + 1] << 8) | (mv[pos + 2] << 16)
        last = bh & 1
        btype = (bh >> 1) & 3
        bsize = bh >> 3
        pos += 3
        if btype == 3:
            raise DecompressError("zstd: reserved block type")
        pos += 1 if btype == 1 else bsize
        if pos > len(mv):
            raise DecompressError("zstd: truncated block")
        if last:
            break
    if checksum:
        pos += 4
        if pos > len(mv):
            raise DecompressError("zstd: truncated checksum")
    return pos


def decompress_member(
    data: bytes | memoryview, fmt: str, limit: int, *, stop_after: int | None = None
) -> Member:
    """Decompress the member at the start of `data`; bounded by `limit`, stopping early at `stop_after`.

    With `stop_after`, returns as soon as at least that many bytes exist (the result may be a little longer,
    and then `complete` is False unless the member ended too). Raises DecompressError (corrupt, truncated,
    unsupported) or OutputLimitExceeded.
    """
    reader = MemberReader(data, fmt, limit)
    if stop_after is None:
        out = reader.read_all()
        return Member(out, reader.consumed, True)
    out = reader.read(stop_after)
    try:
        done = reader.at_end()
    except OutputLimitExceeded:
        done = False  # more output exists, beyond the limit: the prefix asked for is still good
    return Member(out, reader.consumed if done else None, done)


def decompress(data: bytes | memoryview, fmt: str, limit: int, *, stop_after: int | None = None) -> bytes:
    """The decompressed bytes of the member at the start of `data` (see `decompress_member`)."""
    return decompress_member(data, fmt, limit, stop_after=stop_after).data
