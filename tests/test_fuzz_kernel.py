"""Fuzzing the kernel and initrd inspectors and the decompressors with hypothesis.

Whatever the bytes, each call returns a result (a KernelCheck whose error is a GrubError, an InitrdInfo)
or raises the declared DecompressError, never another exception, within 2 s per input, and no output is
ever larger than the limit given.
"""

from __future__ import annotations

import gzip
import lzma
import struct
import time
from functools import cache

import lz4.block  # type: ignore[import-untyped]
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvbuild.pvgrub import decompress as dz
from pvbuild.pvgrub.errors import GrubError
from pvbuild.pvgrub.initrd import InitrdInfo, inspect_initrd
from pvbuild.pvgrub.kernel import LIBXC_COMPRESSIONS, KernelCheck, inspect_kernel
from tests.fixtures_kernels import LOAD_SIZE, build_elf, compress, linux_notes, make_bzimage, newc_archive

SETTINGS = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
KERNEL_LIMIT = 16 * 1024 * 1024
NOTES_OFF = 0x1000 + LOAD_SIZE


@cache
def base_elves() -> tuple[bytes, ...]:
    return (build_elf(), build_elf(bits=32), build_elf(where="shdr"),
            build_elf(where="none", gnu_build_id=False, xen_guest="GUEST_OS=linux,XEN_VER=xen-3.0,PAE=yes"))


@cache
def base_bzimages() -> tuple[bytes, ...]:
    elf = build_elf()
    return tuple(make_bzimage(elf, c) for c in ("gzip", "xz", "bzip2", "zstd", "lz4", "lzma"))


@cache
def base_streams() -> tuple[tuple[str, bytes], ...]:
    plain = b"".join(b"%d kernel text\n" % i for i in range(3000))
    out = []
    for tool, fmt in (("gzip", "gzip"), ("bzip2", "bzip2"), ("xz", "xz"), ("lzma", "lzma"), ("lz4", "lz4"),
                      ("lz4-frame", "lz4"), ("zstd", "zstd")):
        out.append((fmt, compress(plain, tool)))
    return tuple(out)


def check_kernel(data: bytes, arch: str = "x86_64") -> KernelCheck:
    start = time.monotonic()
    result = inspect_kernel(data, arch, LIBXC_COMPRESSIONS, limit=KERNEL_LIMIT)
    assert isinstance(result, KernelCheck)
    assert result.grub_error is None or isinstance(result.grub_error, GrubError)
    assert time.monotonic() - start < 2
    return result


def mutate(data: bytes, edits: list[tuple[int, int]], lo: int = 0, hi: int | None = None) -> bytes:
    buf = bytearray(data)
    hi = len(buf) if hi is None else min(hi, len(buf))
    for pos, val in edits:
        if hi > lo:
            buf[lo + pos % (hi - lo)] = val
    return bytes(buf)


edits_st = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=12)


@SETTINGS
@given(which=st.integers(0, 5), edits=edits_st, arch=st.sampled_from(["x86_64", "i386"]))
def test_fuzz_bzimage_header(which: int, edits: list[tuple[int, int]], arch: str) -> None:
    """Random bytes in the bzImage setup header (0x1F0-0x250: setup_sects, HdrS, version, payload_offset,
    payload_length, kernel_version)."""
    check_kernel(mutate(base_bzimages()[which], edits, 0x1F0, 0x250), arch)


@SETTINGS
@given(which=st.integers(0, 5), edits=edits_st)
def test_fuzz_bzimage_payload(which: int, edits: list[tuple[int, int]]) -> None:
    """Random bytes anywhere in a bzImage, mostly in the compressed payload."""
    check_kernel(mutate(base_bzimages()[which], edits, 0x1F0))


@SETTINGS
@given(
    which=st.integers(0, 3),
    edits=edits_st,
    region=st.sampled_from([(0, 0x40), (0x34, 0x100), (NOTES_OFF, NOTES_OFF + 0x200), (0, 1 << 20)]),
    arch=st.sampled_from(["x86_64", "i386"]),
)
def test_fuzz_elf_headers_phdrs_notes(which: int, edits: list[tuple[int, int]], region: tuple[int, int],
                                      arch: str) -> None:
    """Random bytes in the ELF header, the program headers, the notes or anywhere (section headers)."""
    elf = base_elves()[which]
    check_kernel(mutate(elf, edits, *region), arch)
    check_kernel(make_bzimage(b"", raw_payload=gzip.compress(mutate(elf, edits, *region))), arch)


words = st.one_of(
    st.none(), st.text(max_size=80), st.integers(0, (1 << 64) - 1),
    st.sampled_from(["linux", "generic", "xen-3.0", "yes", "bimodal", "!dom0", "!writable_page_tables",
                     "!x|" * 30, "a" * 70 + "|!dom0"]),
)


@SETTINGS
@given(
    bits=st.sampled_from([32, 64]),
    values=st.fixed_dictionaries({}, optional={k: words for k in (
        "GUEST_OS", "XEN_VERSION", "LOADER", "FEATURES", "PAE_MODE", "ENTRY", "VIRT_BASE", "PADDR_OFFSET",
        "HYPERCALL_PAGE", "PHYS32_ENTRY", "INIT_P2M")}),
    e_entry=st.one_of(st.none(), st.integers(0, (1 << 32) - 1)),
)
def test_fuzz_note_values(bits: int, values: dict[str, str | int | None], e_entry: int | None) -> None:
    """Arbitrary Xen note values (strings where numbers are expected and back, huge addresses)."""
    notes = linux_notes(bits, **values)
    mask = (1 << bits) - 1
    notes = {k: (v & mask if isinstance(v, int) else v) for k, v in notes.items()}
    for arch in ("x86_64", "i386"):
        check_kernel(build_elf(bits=bits, notes=notes, e_entry=e_entry), arch)


@SETTINGS
@given(guest=st.text(max_size=300))
def test_fuzz_xen_guest_string(guest: str) -> None:
    """Arbitrary legacy `__xen_guest` strings (KEY=VALUE parsing with 31/127-character fields)."""
    check_kernel(build_elf(where="none", gnu_build_id=False, xen_guest=guest.replace("\0", "")))


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_fuzz_random_kernel_files(data: bytes) -> None:
    """Random files, and random files given an ELF or bzImage signature."""
    check_kernel(data)
    check_kernel(b"\x7fELF" + data)
    image = bytearray(0x250) + data
    image[0x202:0x206] = b"HdrS"
    check_kernel(bytes(image))


def check_initrd(data: bytes, limit: int = 8 * 1024 * 1024) -> InitrdInfo:
    start = time.monotonic()
    info = inspect_initrd(data, limit=limit)
    assert isinstance(info, InitrdInfo)
    assert sum(s.uncompressed for s in info.segments if s.compression != "none") <= limit
    assert time.monotonic() - start < 2
    info.has_module("xen-blkfront")
    _ = info.modules, info.kernel_versions, info.module_paths
    return info


entries_st = st.lists(st.tuples(st.text(min_size=1, max_size=40).map(lambda s: s.replace("\0", "")),
                                st.binary(max_size=300)), max_size=6)


def py_compress(fmt: str, data: bytes) -> bytes:
    if fmt == "gzip":
        return gzip.compress(data)
    if fmt == "xz":
        return lzma.compress(data, check=lzma.CHECK_CRC32)
    if fmt == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE)
    if fmt == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if fmt == "lz4":
        block = bytes(lz4.block.compress(data, store_size=False))
        return dz.LZ4_LEGACY_MAGIC + struct.pack("<I", len(block)) + block
    return data


@SETTINGS
@given(entries=entries_st, edits=st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)),
                                          max_size=8),
       fmt=st.sampled_from(["none", "gzip", "xz", "lzma", "zstd", "lz4"]),
       early=st.booleans(), crc=st.booleans())
def test_fuzz_cpio_headers(entries: list[tuple[str, bytes]], edits: list[tuple[int, int]], fmt: str,
                           early: bool, crc: bool) -> None:
    """cpio archives with random names and data, their headers then damaged, alone or compressed, after
    an uncompressed early archive."""
    archive = mutate(newc_archive(entries, magic=b"070702" if crc else b"070701"), edits) if edits else \
        newc_archive(entries, magic=b"070702" if crc else b"070701")
    blob = (newc_archive([("kernel/x86/microcode/GenuineIntel.bin", b"u" * 10)]) if early else b"")
    check_initrd(blob + py_compress(fmt, archive))


@SETTINGS
@given(which=st.integers(0, 6), edits=edits_st, cut=st.integers(0, 1 << 20))
def test_fuzz_compressed_streams(which: int, edits: list[tuple[int, int]], cut: int) -> None:
    """Damaged and truncated real compressed streams: bytes within the limit or DecompressError."""
    fmt, packed = base_streams()[which]
    damaged = mutate(packed, edits)
    for data in (damaged, packed[: cut % (len(packed) + 1)]):
        start = time.monotonic()
        try:
            out = dz.decompress_member(data, fmt, 200_000)
            assert len(out.data) <= 200_000
        except dz.DecompressError:
            pass
        assert time.monotonic() - start < 2
        check_initrd(data, limit=200_000)


@SETTINGS
@given(data=st.binary(max_size=2048), fmt=st.sampled_from(list(dz.FORMATS)), stop=st.integers(1, 5000))
def test_fuzz_random_streams(data: bytes, fmt: str, stop: int) -> None:
    """Random bytes with each format's magic in front."""
    magic = {"gzip": dz.GZIP_MAGIC, "bzip2": dz.BZIP2_MAGIC, "xz": dz.XZ_MAGIC, "lzma": dz.LZMA_MAGIC,
             "lzo": dz.LZO_MAGIC, "lz4": dz.LZ4_LEGACY_MAGIC, "zstd": dz.ZSTD_MAGIC}.get(fmt, b"")
    for blob in (magic + data, data):
        try:
            out = dz.decompress_member(blob, fmt, 100_000, stop_after=stop)
            assert len(out.data) <= 100_000
        except dz.DecompressError:
            pass
        check_initrd(blob, limit=100_000)


def test_hostile_lzma_dictionary_is_bounded() -> None:
    """An lzma-alone header asking for a 4 GiB dictionary fails on the memory limit (Xen gives its
    decoders 256 MiB, xg_dom_bzimageloader.c:274-301) instead of allocating it."""
    header = b"\x5d" + struct.pack("<I", 0xFFFFFFFF) + struct.pack("<Q", 1 << 40)
    with pytest.raises(dz.DecompressError, match=r"[Mm]emory"):
        dz.decompress(header + b"\0" * 64, "lzma", 1 << 20)
