"""Bounded decompression (PVGRUB.md §6: payload and initrd compressions), checked against the real tools."""

from __future__ import annotations

import os
import struct

import pytest

from pvbuild.pvgrub import decompress as dz
from tests.fixtures_kernels import compress

PLAIN = b"".join(b"line %06d of some kernel-like text\n" % i for i in range(40000)) + os.urandom(4096)

TOOL_FORMATS = [("gzip", "gzip"), ("bzip2", "bzip2"), ("xz", "xz"), ("lzma", "lzma"), ("lz4", "lz4"),
                ("lz4-frame", "lz4"), ("zstd", "zstd")]


@pytest.mark.parametrize(("tool", "fmt"), [*TOOL_FORMATS, ("lzo", "lzo")])
def test_detect_real_tool_output(tool: str, fmt: str) -> None:
    """Magics of PVGRUB.md §6 (xg_dom_bzimageloader.c:860-935): each real tool's output is recognised."""
    assert dz.detect(compress(PLAIN, tool)) == fmt


def test_detect_magics() -> None:
    """The exact magics: gzip 1F8B, bzip2 BZh, xz FD377A585A00, lzma 5D0000, lzo 894C5A4F00, lz4 legacy
    02214C18 and frame 04224D18, zstd 28B52FFD; anything else is "none"."""
    cases = {
        b"\x1f\x8b\x08": "gzip", b"BZh9": "bzip2", b"\xfd7zXZ\x00\x00": "xz", b"\x5d\x00\x00\x80\x00": "lzma",
        b"\x89LZO\x00\r\n": "lzo", b"\x02\x21\x4c\x18": "lz4", b"\x04\x22\x4d\x18": "lz4",
        b"\x28\xb5\x2f\xfd": "zstd", b"070701": "none", b"": "none", b"\x7fELF": "none",
        b"\x5d\x00\x01": "none", b"\xfd7zXZ\x01": "none",
    }
    for data, fmt in cases.items():
        assert dz.detect(data) == fmt, data
    assert dz.lz4_container(b"\x02\x21\x4c\x18") == "legacy"
    assert dz.lz4_container(b"\x04\x22\x4d\x18") == "frame"
    assert dz.lz4_container(b"\x28\xb5\x2f\xfd") is None


@pytest.mark.parametrize(("tool", "fmt"), TOOL_FORMATS)
def test_roundtrip_and_consumed(tool: str, fmt: str) -> None:
    """Decompression gives the original bytes and tells how many input bytes the member used, so that
    what follows it (another initrd member) can be found."""
    packed = compress(PLAIN, tool)
    # A trailer that cannot be read as more of the same member (lz4 legacy has no end marker).
    trailer = b"\xff\xff\xff\xffTRAILING DATA"
    m = dz.decompress_member(packed + trailer, fmt, 10 * len(PLAIN))
    assert m.data == PLAIN
    assert m.complete
    assert m.consumed == len(packed)
    assert dz.decompress(packed, fmt, len(PLAIN)) == PLAIN


@pytest.mark.parametrize(("tool", "fmt"), TOOL_FORMATS)
def test_stop_after_returns_a_prefix(tool: str, fmt: str) -> None:
    """`stop_after` ends the work once that many bytes exist (the kernel inspector's partial payload)."""
    packed = compress(PLAIN, tool)
    m = dz.decompress_member(packed, fmt, len(PLAIN), stop_after=1000)
    assert m.data == PLAIN[:1000]
    assert not m.complete
    assert m.consumed is None


@pytest.mark.parametrize(("tool", "fmt"), TOOL_FORMATS)
def test_limit_is_never_exceeded(tool: str, fmt: str) -> None:
    """Output beyond `limit` raises OutputLimitExceeded (a decompression bomb cannot exhaust memory)."""
    packed = compress(PLAIN, tool)
    with pytest.raises(dz.OutputLimitExceeded):
        dz.decompress(packed, fmt, len(PLAIN) - 1)
    reader = dz.MemberReader(packed, fmt, 50_000)
    with pytest.raises(dz.OutputLimitExceeded):
        while not reader.eof:
            reader.skip(1 << 16)
    assert reader.total_out <= 50_000 + (1 << 20)


@pytest.mark.parametrize(("tool", "fmt"), TOOL_FORMATS)
def test_corrupt_and_truncated_streams(tool: str, fmt: str) -> None:
    """Corrupt or truncated data is a DecompressError, never another exception."""
    packed = bytearray(compress(PLAIN, tool))
    with pytest.raises(dz.DecompressError):
        dz.decompress(bytes(packed[: len(packed) // 2]), fmt, 10 * len(PLAIN))
    for i in range(16, len(packed) - 16, max(1, len(packed) // 7)):
        packed[i] ^= 0x55
    try:
        out = dz.decompress(bytes(packed), fmt, 10 * len(PLAIN))
    except dz.DecompressError:
        return
    assert out != PLAIN  # lz4 has no checksum: damage may decode to other bytes


def test_lzo_is_detected_but_not_decompressed() -> None:
    """lzo (AWS-supported for kernels) is recognised; decompressing it raises UnsupportedFormat."""
    packed = compress(PLAIN, "lzo")
    with pytest.raises(dz.UnsupportedFormat):
        dz.decompress(packed, "lzo", 10 * len(PLAIN))
    with pytest.raises(dz.UnsupportedFormat):
        dz.decompress(packed, "brotli", 10)


def test_lz4_legacy_blocks_and_repeated_magic() -> None:
    """The lz4 legacy container (lz4 -l): 8 MiB blocks; a repeated magic between blocks is skipped, as
    Linux's unlz4 and Xen's xc_try_lz4_decode (xg_dom_bzimageloader.c:683-688) do."""
    big = os.urandom(1 << 16) * 150  # 9.4 MiB: two legacy blocks
    packed = compress(big, "lz4")
    assert dz.decompress(packed, "lz4", len(big)) == big
    doubled = packed + packed  # a second legacy stream starts with the magic again
    m = dz.decompress_member(doubled, "lz4", 3 * len(big))
    assert m.data == big + big
    assert m.consumed == len(doubled)
    with pytest.raises(dz.DecompressError):
        dz.decompress(dz.LZ4_LEGACY_MAGIC + struct.pack("<I", 100) + b"\x00" * 10, "lz4", 1000)


def test_zstd_frame_length_and_multiple_frames() -> None:
    """A zstd member ends at its frame's end (the next initrd member starts there)."""
    a, b = compress(PLAIN[:5000], "zstd"), compress(PLAIN[5000:9000], "zstd")
    assert dz.zstd_frame_length(a + b) == len(a)
    m = dz.decompress_member(a + b, "zstd", 10**6)
    assert m.data == PLAIN[:5000]
    assert m.consumed == len(a)
    with pytest.raises(dz.DecompressError):
        dz.zstd_frame_length(a[:10])


def test_none_format_and_empty_input() -> None:
    assert dz.decompress(b"abc", "none", 10) == b"abc"
    with pytest.raises(dz.OutputLimitExceeded):
        dz.decompress(b"abcdef", "none", 3)
    for fmt in ("gzip", "bzip2", "xz", "lzma", "lz4", "zstd"):
        with pytest.raises(dz.DecompressError):
            dz.decompress(b"", fmt, 100)


@pytest.mark.parametrize(("tool", "fmt"), TOOL_FORMATS)
def test_consumed_when_read_in_small_steps(tool: str, fmt: str) -> None:
    """`consumed` is right however the output is read (the initrd walk reads headers a few bytes at a
    time)."""
    packed = compress(PLAIN[:3000], tool)
    reader = dz.MemberReader(packed + b"\xff\xff\xff\xff" + b"X" * 100, fmt, 10**6)
    got = bytearray()
    while chunk := reader.read(7):
        got += chunk
    assert bytes(got) == PLAIN[:3000]
    assert reader.consumed == len(packed)
