"""pvbuild.aws.pgzip: parallel gzip that must stay one standard gzip member, read back by the real `gunzip` and by
Python's gzip, whatever the input, the block size, the number of workers and the way the input is written."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvbuild.aws import pgzip
from pvbuild.aws.pgzip import ParallelGzipWriter, gzip_header

KIB = 1024
MIB = 1024 * KIB
needs_gunzip = pytest.mark.skipif(shutil.which("gunzip") is None, reason="the real gunzip is the reference reader")


def _gunzip(blob: bytes) -> bytes:
    return subprocess.run(["gunzip", "-c"], input=blob, capture_output=True, check=True).stdout


def _members(blob: bytes) -> int:
    """Parse the stream member by member: header, raw deflate to its final block, CRC-32 and ISIZE."""
    pos, count = 0, 0
    while pos < len(blob):
        assert blob[pos:pos + 3] == b"\x1f\x8b\x08", blob[pos:pos + 10]
        assert blob[pos + 3] == 0  # no FEXTRA/FNAME/FCOMMENT/FHCRC: the header is 10 bytes
        d = zlib.decompressobj(-15)
        data = d.decompress(blob[pos + 10:])
        assert d.eof, "deflate stream without a final block"
        crc, isize = struct.unpack("<II", d.unused_data[:8])
        assert crc == zlib.crc32(data) and isize == len(data) & 0xFFFFFFFF
        pos = len(blob) - len(d.unused_data) + 8
        count += 1
    return count


def _check(data: bytes, blob: bytes, *, real_gunzip: bool = True) -> None:
    assert gzip.decompress(blob) == data
    assert _members(blob) == 1
    if real_gunzip and shutil.which("gunzip"):
        assert _gunzip(blob) == data


def _text_like(n: int, seed: int = 1) -> bytes:
    """Compressible but not trivial: words from a small vocabulary, like logs or source text."""
    rng = random.Random(seed)  # noqa: S311 - test data
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randrange(2, 10)))
             for _ in range(2000)]
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rng.choices(words, k=16)) + b"\n"
    return bytes(out[:n])


def _binary_like(n: int, seed: int = 2) -> bytes:
    """Real-ish disk content: runs of zeros, text, random bytes and repeats of earlier data, in 4 KiB blocks."""
    rng = random.Random(seed)  # noqa: S311
    text = _text_like(256 * KIB, seed)
    out = bytearray()
    while len(out) < n:
        kind = rng.randrange(4)
        if kind == 0:
            out += bytes(4096)
        elif kind == 1:
            off = rng.randrange(len(text) - 4096)
            out += text[off:off + 4096]
        elif kind == 2:
            out += rng.randbytes(4096)
        else:
            off = rng.randrange(max(1, len(out) - 4096)) if len(out) > 4096 else 0
            out += (bytes(out[off:off + 4096]) or bytes(4096))
    return bytes(out[:n])


# ---------------------------------------------------------------- the format


@needs_gunzip
@pytest.mark.parametrize("data", [b"", b"x", b"\0", bytes(range(256)) * 3], ids=["empty", "1 byte", "1 zero", "768"])
def test_tiny_inputs(data: bytes) -> None:
    _check(data, pgzip.compress(data))


def test_header_is_what_zlib_and_gzip_n_write() -> None:
    for level in range(10):
        c = zlib.compressobj(level, zlib.DEFLATED, 31)
        assert (c.compress(b"abc") + c.flush())[:10] == gzip_header(level)
        assert pgzip.compress(b"abc", level=level)[:10] == gzip_header(level)
    assert gzip_header(9) == bytes.fromhex("1f8b0800000000000203")  # mtime 0, no name: as `gzip -n -9`


@needs_gunzip
@pytest.mark.parametrize("block", [1, 7, 4 * KIB, 32 * KIB, 64 * KIB])
@pytest.mark.parametrize("delta", [-1, 0, 1])
@pytest.mark.parametrize("blocks", [1, 2, 3])
def test_block_size_boundaries(block: int, delta: int, blocks: int) -> None:
    n = max(0, block * blocks + delta)
    if block == 1 and n > 8:
        n = 8
    data = _binary_like(n, seed=n)
    for workers in (1, 3):
        _check(data, pgzip.compress(data, block_size=block, workers=workers))


@needs_gunzip
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_levels(level: int) -> None:
    data = _binary_like(600 * KIB)
    blob = pgzip.compress(data, level=level, block_size=100 * KIB, workers=2)
    _check(data, blob)
    assert blob[8] == gzip_header(level)[8]


@needs_gunzip
def test_random_data() -> None:
    data = os.urandom(3 * MIB + 12345)
    blob = pgzip.compress(data, block_size=256 * KIB)
    _check(data, blob)
    # incompressible data costs only deflate's stored-block framing (5 bytes per 64 KiB) and the block ends
    assert len(blob) < len(data) * 1.001 + 64


@needs_gunzip
def test_highly_compressible_data() -> None:
    data = bytes(16 * MIB) + b"a" * MIB + bytes(3 * MIB)
    blob = pgzip.compress(data, block_size=128 * KIB)
    _check(data, blob)
    assert len(blob) < 64 * KIB


@needs_gunzip
def test_large_input_through_many_blocks_and_writes(tmp_path: Path) -> None:
    """40 MiB in 1 MiB writes through 128 KiB blocks (320 blocks), streamed to a file: gunzip reads the file."""
    rng = random.Random(7)  # noqa: S311
    path = tmp_path / "big.gz"
    expected = zlib.crc32(b"")
    total = 0
    with path.open("wb") as f, ParallelGzipWriter(f.write, workers=2) as gz:
        for i in range(40):
            chunk = _binary_like(MIB, seed=i) if i % 3 else rng.randbytes(MIB)
            gz.write(chunk)
            expected = zlib.crc32(chunk, expected)
            total += len(chunk)
        assert gz.size == total
    assert gz.crc32 == expected
    assert gz.compressed_size == path.stat().st_size
    out = subprocess.run(["gunzip", "-c", str(path)], capture_output=True, check=True).stdout
    assert len(out) == total and zlib.crc32(out) == expected
    blob = path.read_bytes()
    assert _members(blob) == 1
    with gzip.open(path, "rb") as g:
        assert zlib.crc32(g.read()) == expected


def test_dictionary_reaches_back_across_small_blocks() -> None:
    """With blocks smaller than 32 KiB the dictionary is the last 32 KiB of input, across several blocks: a
    repeat 20 KiB back compresses as well as one whole-stream compressor does."""
    unit = os.urandom(20 * KIB)
    data = unit * 10
    blob = pgzip.compress(data, block_size=4 * KIB, workers=2)
    assert gzip.decompress(blob) == data
    assert len(blob) < len(unit) + 8 * KIB


# ---------------------------------------------------------------- determinism and streaming


def test_output_is_deterministic_across_workers_and_writes() -> None:
    data = _binary_like(2 * MIB + 3)
    ref = pgzip.compress(data, block_size=128 * KIB, workers=1)
    for workers in (2, 4, 8):
        assert pgzip.compress(data, block_size=128 * KIB, workers=workers) == ref
    out: list[bytes] = []
    with ParallelGzipWriter(out.append, block_size=128 * KIB, workers=3, max_pending=2) as gz:
        view = memoryview(data)
        pos = 0
        rng = random.Random(3)  # noqa: S311
        while pos < len(view):
            n = rng.choice([1, 17, 4096, 100_000, 300_000])
            gz.write(view[pos:pos + n])
            pos += n
    assert b"".join(out) == ref
    assert pgzip.compress(data, block_size=128 * KIB, workers=2) == ref  # and again: no hidden state


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=12 * KIB), cuts=st.lists(st.integers(0, 12 * KIB), max_size=12),
       block=st.sampled_from([1, 3, 512, 1000, 4 * KIB, 64 * KIB]), workers=st.integers(1, 4),
       compressible=st.booleans())
def test_write_boundaries_never_change_the_stream(data: bytes, cuts: list[int], block: int, workers: int,
                                                  compressible: bool) -> None:
    if compressible:
        data = (data[:64] or b"a") * (len(data) // max(1, len(data[:64])) + 1)
    ref = pgzip.compress(data, block_size=block, workers=1, level=6)
    out: list[bytes] = []
    with ParallelGzipWriter(out.append, block_size=block, workers=workers, level=6, max_pending=2) as gz:
        prev = 0
        for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
            assert gz.write(data[prev:cut]) == cut - prev
            prev = cut
    blob = b"".join(out)
    assert blob == ref
    assert gzip.decompress(blob) == data
    assert _members(blob) == 1


# ---------------------------------------------------------------- ratio and resources


def test_ratio_is_within_a_few_percent_of_zlib_level_9() -> None:
    for data in (_binary_like(6 * MIB), _text_like(4 * MIB)):
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        ref = len(c.compress(data) + c.flush())
        got = len(pgzip.compress(data))
        assert got <= ref * 1.02, (got, ref)


def test_bounded_memory_in_flight() -> None:
    """The writer never holds more than max_pending blocks: a sink that counts what the pool has finished."""
    block = 64 * KIB
    seen = 0

    def sink(data: bytes) -> None:
        nonlocal seen
        seen += len(data)

    gz = ParallelGzipWriter(sink, level=1, block_size=block, workers=2, max_pending=3)
    data = os.urandom(block)
    for i in range(50):
        gz.write(data)
        # blocks written but not yet delivered to the sink: the held-back one, at most 3 pending, and the
        # one being submitted
        assert gz.size - seen <= block * (3 + 2) + 64, i
    gz.close()
    assert gz.size == 50 * block


def test_errors_and_abort() -> None:
    with pytest.raises(ValueError, match="level"):
        ParallelGzipWriter(lambda _b: None, level=10)
    with pytest.raises(ValueError, match="block size"):
        ParallelGzipWriter(lambda _b: None, block_size=0)
    out: list[bytes] = []
    with pytest.raises(RuntimeError, match="boom"), ParallelGzipWriter(out.append, block_size=KIB) as gz:
        gz.write(os.urandom(10 * KIB))
        raise RuntimeError("boom")
    delivered = b"".join(out)
    assert not delivered.endswith(struct.pack("<I", 10 * KIB))  # no trailer after an abort
    with pytest.raises(ValueError, match="closed"):
        gz.write(b"more")
    gz.close()  # closing an aborted stream does nothing


def test_sink_failure_stops_the_stream() -> None:
    calls = 0

    def sink(data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("disk full")

    gz = ParallelGzipWriter(sink, block_size=KIB, workers=2)
    with pytest.raises(OSError, match="disk full"), gz:
        for _ in range(100):
            gz.write(os.urandom(KIB))
    assert calls == 3
