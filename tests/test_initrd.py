"""The initrd inspector against initrds in Debian's real layout and synthetic edge cases (PVGRUB.md §6).

The kernel's init/initramfs.c `unpack_to_rootfs` is the reference: uncompressed cpio at 4-byte aligned
offsets, zero padding skipped, compressed members recognised by lib/decompress.c's two-byte magics, each
member a sequence of newc/crc cpio archives ending in TRAILER!!!.
"""

from __future__ import annotations

import pytest

from pvbuild.pvgrub import decompress as dz
from pvbuild.pvgrub.initrd import inspect_initrd, kernel_compression
from tests.fixtures_kernels import compress, debian_initrd, debian_kernel, newc_archive

MODULES = {"xen-blkfront", "xen-netfront", "ext4", "jbd2", "mbcache", "crc16"}


@pytest.mark.parametrize(
    ("variant", "compression", "segments"),
    [
        ("debian-zstd", "zstd", ["none", "zstd"]),
        ("gzip", "gzip", ["gzip"]),
        ("xz", "xz", ["none", "xz"]),
        ("lz4", "lz4", ["none", "lz4"]),
        ("crc-gzip", "gzip", ["gzip"]),
    ],
)
def test_debian_layout_initrds(variant: str, compression: str, segments: list[str]) -> None:
    """PVGRUB.md §6 Initrd: a Debian-style initrd (uncompressed early cpio, padding, compressed main
    archive) lists every path, and `has_module("xen-blkfront")` finds the real xen-blkfront.ko under
    usr/lib/modules/<version>/kernel/drivers/block/."""
    kernel = debian_kernel("amd64")
    info = inspect_initrd(debian_initrd(variant).read_bytes())
    assert info.error is None, info.error
    assert info.compression == compression
    assert [s.compression for s in info.segments] == segments
    assert info.files is not None
    assert f"usr/lib/modules/{kernel.release}/kernel/drivers/block/xen-blkfront.ko" in info.files
    assert "lib" in info.files and "init" in info.files
    assert info.has_module("xen-blkfront") and info.has_module("xen_blkfront")
    assert info.module_status("xen-blkfront") is True
    assert info.modules >= MODULES
    assert info.kernel_versions == {kernel.release}
    if segments[0] == "none":
        assert "kernel/x86/microcode/AuthenticAMD.bin" in info.files
        assert info.segments[0].archives == 1
        assert info.segments[0].length == info.segments[1].offset
    assert all(s.archives == 1 for s in info.segments)


def test_initrd_without_blkfront() -> None:
    """PVGRUB.md §6: with XEN_BLKDEV_FRONTEND=m the initrd must hold xen-blkfront.ko; here it does not."""
    info = inspect_initrd(debian_initrd("no-blkfront").read_bytes())
    assert info.files is not None
    assert not info.has_module("xen-blkfront")
    assert info.module_status("xen-blkfront") is False
    assert info.has_module("xen-netfront")


def test_lzo_initrd_is_unknown_not_an_error() -> None:
    """An lzo main archive (the kernel reads it; this tool cannot): files None, no exception."""
    info = inspect_initrd(debian_initrd("lzo").read_bytes())
    assert info.compression == "lzo"
    assert info.files is None
    assert info.module_status("xen-blkfront") is None
    assert not info.has_module("xen-blkfront")
    assert info.error is None


def test_lz4_frame_initrd_is_refused_by_the_kernel() -> None:
    """lib/decompress.c knows lz4 only by 02 21 (the legacy container): an lz4 frame main archive is
    "invalid magic at start of compressed archive", so nothing of it is unpacked."""
    info = inspect_initrd(debian_initrd("lz4-frame").read_bytes())
    assert info.error is not None and "invalid magic" in info.error
    assert info.files is not None and not info.has_module("xen-blkfront")
    assert "kernel/x86/microcode/AuthenticAMD.bin" in info.files


def test_compressed_modules_are_found() -> None:
    """Module files may be compressed (.ko.xz, .ko.zst, .ko.gz): names match without the suffix, and
    "-" equals "_"."""
    arch = newc_archive([
        ("usr/lib/modules/6.12.0/kernel/drivers/block/xen-blkfront.ko.xz", b"x"),
        ("./usr/lib/modules/6.12.0/kernel/fs/ext4/ext4.ko.zst", b"y"),
        ("/lib/modules/6.12.0/kernel/drivers/net/xen_netfront.ko.gz", b"z"),
        ("usr/share/doc/not-a-module.kox", b""),
    ])
    info = inspect_initrd(compress(arch, "gzip"))
    assert info.modules == {"xen-blkfront", "ext4", "xen_netfront"}
    assert info.has_module("xen-netfront") and info.has_module("xen-blkfront") and info.has_module("ext4")
    assert info.kernel_versions == {"6.12.0"}
    assert info.files is not None and "lib/modules/6.12.0/kernel/drivers/net/xen_netfront.ko.gz" in info.files


def test_several_members_and_padding() -> None:
    """Several uncompressed archives and several compressed members, separated by zero padding, are all
    unpacked (unpack_to_rootfs loop); `compression` is the last non-empty member's."""
    a = newc_archive([("a", b"1")])
    b = newc_archive([("b", b"22")], magic=b"070702")
    blob = a + b"\0" * 8 + b + compress(newc_archive([("c", b"3")]), "gzip") + b"\0" * 4
    blob += compress(newc_archive([("d", b"")]), "xz") + compress(newc_archive([("e", b"")]), "zstd")
    info = inspect_initrd(blob)
    assert info.error is None
    assert info.files == frozenset({"a", "b", "c", "d", "e"})
    assert [s.compression for s in info.segments] == ["none", "gzip", "xz", "zstd"]
    assert info.compression == "zstd"
    assert info.segments[0].archives == 2


def test_unaligned_or_unknown_data() -> None:
    """An archive at an unaligned offset or an unknown magic: "invalid magic at start of compressed
    archive" (unpack_to_rootfs); what came before stays unpacked."""
    a = newc_archive([("a", b"1")])
    info = inspect_initrd(a + b"\0" + newc_archive([("b", b"")]))
    assert info.error is not None and "invalid magic" in info.error
    assert info.files == frozenset({"a"})
    info = inspect_initrd(a + b"JUNK" * 4)
    assert info.error is not None and "invalid magic" in info.error


def test_cpio_errors() -> None:
    """Old binary/odc cpio ("070707") is refused ("incorrect cpio method used: use -H newc option");
    a member ending inside an archive is "junk at the end of compressed archive"; junk after the
    trailer inside a member is "junk within compressed archive"."""
    assert inspect_initrd(b"070707" + b"0" * 200).error == "incorrect cpio method used: use -H newc option"
    unfinished = newc_archive([("a", b"1")], trailer=False)
    assert inspect_initrd(compress(unfinished, "gzip")).error == "junk at the end of compressed archive"
    junk = newc_archive([("a", b"1")]) + b"XYZW"
    assert inspect_initrd(compress(junk, "gzip")).error == "junk within compressed archive"
    bad_hex = bytearray(newc_archive([("a", b"1")]))
    bad_hex[10] = ord("G")
    assert inspect_initrd(bytes(bad_hex)).error is not None


def test_truncated_and_corrupt_members() -> None:
    """A corrupt compressed member is "decompressor failed"; never an exception."""
    packed = compress(newc_archive([("a", b"1" * 10000)]), "xz")
    info = inspect_initrd(packed[: len(packed) // 2])
    assert info.error is not None and "decompressor failed" in info.error
    assert inspect_initrd(b"").files == frozenset()
    assert inspect_initrd(b"\0" * 100).files == frozenset()


def test_limit_makes_content_unknown() -> None:
    """The walk is bounded: past `limit` decompressed bytes the content is unknown (files None)."""
    packed = compress(newc_archive([("big", b"\0" * 200_000)]), "zstd")
    info = inspect_initrd(packed, limit=100_000)
    assert info.files is None
    assert inspect_initrd(packed).files == frozenset({"big"})


def test_kernel_magics() -> None:
    """lib/decompress.c compressed_formats: two bytes decide."""
    assert kernel_compression(b"\x1f\x8b") == "gzip"
    assert kernel_compression(b"\x1f\x9e") == "gzip"
    assert kernel_compression(b"\x02\x21") == "lz4"
    assert kernel_compression(dz.LZ4_FRAME_MAGIC) is None
    assert kernel_compression(b"07") is None
