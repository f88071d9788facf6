"""Partition tables as GRUB 0.97 walks them (PVGRUB.md §4; stage2/disk_io.c next_partition, set_device).

Crafted byte by byte so that each rule is pinned independently of sfdisk's choices.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from pvbuild.pvgrub.blockio import MemoryDisk
from pvbuild.pvgrub.disk import HD_BASE, Device, Scheme, open_volume, parse_device, read_layout
from pvbuild.pvgrub.errors import GrubError

SECTORS = 4096


def entry(ptype: int, start: int, length: int, flag: int = 0) -> bytes:
    return bytes([flag, 0, 0, 0, ptype, 0, 0, 0]) + struct.pack("<II", start, length)


def table(disk: bytearray, sector: int, entries: list[bytes]) -> None:
    base = sector * 512
    for i, e in enumerate(entries):
        disk[base + 446 + 16 * i:base + 462 + 16 * i] = e
    disk[base + 510:base + 512] = b"\x55\xaa"


def new_disk() -> bytearray:
    return bytearray(SECTORS * 512)


def vol(disk: bytearray, n: int, gpt: bool = False) -> tuple[int, int, int | None]:
    v = open_volume(MemoryDisk(bytes(disk)), Device(HD_BASE, n), gpt=gpt)
    return v.start // 512, v.length // 512, v.part_type


def err(disk: bytearray, n: int, gpt: bool = False) -> int:
    with pytest.raises(GrubError) as e:
        open_volume(MemoryDisk(bytes(disk)), Device(HD_BASE, n), gpt=gpt)
    return e.value.number


def test_primaries_by_slot_and_empty_slot_is_22() -> None:
    """disk_io.c:749-752: slots 0-3 keep their numbers even when empty; :895-900 only a non-zero type
    matches, so an empty slot is "No such partition"."""
    d = new_disk()
    table(d, 0, [entry(0x83, 64, 100), entry(0, 0, 0), entry(0x83, 300, 100)])
    assert vol(d, 0) == (64, 100, 0x83)
    assert err(d, 1) == 22
    assert vol(d, 2) == (300, 100, 0x83)
    assert err(d, 3) == 22


def test_no_signature_is_5() -> None:
    """disk_io.c:700-705 PC_MBR_CHECK_SIG: no 0x55AA -> Error 5 for any (hd0,N)."""
    assert err(new_disk(), 0) == 5


def test_logicals_from_4_in_ebr_order_relative_to_first_extended() -> None:
    """disk_io.c:713-754: logical partitions are numbered from 4 in chain order; the EBR links are relative
    to the start of the first extended partition, the logical's start to its own EBR."""
    d = new_disk()
    table(d, 0, [entry(0x83, 64, 100), entry(0x05, 1000, 2000)])
    table(d, 1000, [entry(0x83, 10, 50), entry(0x05, 200, 400)])  # next EBR at 1000+200
    table(d, 1200, [entry(0x8E, 20, 60), entry(0x05, 500, 100)])  # next EBR at 1000+500
    table(d, 1500, [entry(0x83, 30, 40)])
    assert vol(d, 4) == (1010, 50, 0x83)
    assert vol(d, 5) == (1220, 60, 0x8E)
    assert vol(d, 6) == (1530, 40, 0x83)
    assert err(d, 7) == 22


def test_only_the_first_extended_partition_is_followed() -> None:
    """PVGRUB.md §4: only the first extended (0x05/0x0F/0x85) of a table is followed (disk_io.c:715-724)."""
    d = new_disk()
    table(d, 0, [entry(0x0F, 1000, 500), entry(0x85, 2000, 500)])
    table(d, 1000, [entry(0x83, 10, 50)])
    table(d, 2000, [entry(0x83, 10, 50)])
    assert vol(d, 4) == (1010, 50, 0x83)
    assert err(d, 5) == 22
    layout = read_layout(MemoryDisk(bytes(d)))
    assert [p.index for p in layout.partitions] == [4]


def test_ebr_without_signature_is_5_and_loops_are_bounded() -> None:
    """A broken EBR is Error 5 like the MBR, but only once the walk reaches it (partitions before it are
    found: disk_io.c real_open_partition returns at the first match). A cyclic chain keeps numbering the
    same logical partition; a destination it never reaches would make GRUB loop forever: bounded here."""
    d = new_disk()
    table(d, 0, [entry(0x83, 64, 100), entry(0x05, 1000, 500)])
    assert vol(d, 0) == (64, 100, 0x83)
    assert err(d, 4) == 5
    table(d, 1000, [entry(0x83, 10, 50), entry(0x05, 0, 500)])  # links back to itself
    assert vol(d, 4) == (1010, 50, 0x83)
    assert vol(d, 5) == (1010, 50, 0x83)
    table(d, 1000, [entry(0, 0, 0), entry(0x05, 0, 500)])  # a cycle with no logical partition at all
    assert err(d, 4) == 5
    assert read_layout(MemoryDisk(bytes(d))).problems


def test_extended_container_itself_is_a_partition_number() -> None:
    """disk_io.c:749-752: the extended entry in slot 1 is (hd0,1); it matches, and mounts nothing."""
    d = new_disk()
    table(d, 0, [entry(0x83, 64, 100), entry(0x05, 1000, 500)])
    assert vol(d, 1) == (1000, 500, 0x05)


def gpt_disk(types: list[bytes | None]) -> bytearray:
    d = new_disk()
    table(d, 0, [entry(0xEE, 1, SECTORS - 1)])
    entries = bytearray(128 * 128)
    for i, t in enumerate(types):
        if t is not None:
            first, last = 100 + 200 * i, 100 + 200 * i + 99
            entries[i * 128:i * 128 + 16] = t
            entries[i * 128 + 16:i * 128 + 32] = bytes([i + 1]) * 16
            entries[i * 128 + 32:i * 128 + 48] = struct.pack("<QQ", first, last)
    d[1024:1024 + len(entries)] = entries
    hdr = bytearray(92)
    hdr[0:8] = b"EFI PART"
    struct.pack_into("<IIIIQQQQ", hdr, 8, 0x10000, 92, 0, 0, 1, SECTORS - 1, 34, SECTORS - 34)
    struct.pack_into("<QII", hdr, 72, 2, 128, 128)
    struct.pack_into("<I", hdr, 88, zlib.crc32(entries))
    struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr)))
    d[512:512 + 92] = hdr
    return d


LINUX = bytes.fromhex("af3dc60f838472478e793d69d8477de4")


def test_gpt_read_by_104_unknown_to_103() -> None:
    """PVGRUB.md §4: GPT unsupported on <= 1.03 (the 0xEE slot is an ordinary partition and the rest is
    empty: 17/22); 1.04+ reads the entries, numbered by their index (UNVERIFIED numbering)."""
    d = gpt_disk([LINUX, None, LINUX])
    assert vol(d, 0, gpt=False) == (1, SECTORS - 1, 0xEE)
    assert err(d, 1, gpt=False) == 22
    assert vol(d, 0, gpt=True) == (100, 100, None)
    assert err(d, 1, gpt=True) == 22
    assert vol(d, 2, gpt=True) == (500, 100, None)
    layout = read_layout(MemoryDisk(bytes(d)))
    assert layout.scheme == Scheme.GPT
    assert [p.index for p in layout.partitions] == [0, 2]
    assert layout.problems == []


def test_filesystem_at_sector_zero_is_not_an_mbr() -> None:
    """A partitionless image whose first sector happens to end in 0x55AA (XFS, FAT boot sectors) is not read
    as a partition table by the report's layout (GRUB itself would still try it for (hd0,N))."""
    d = new_disk()
    d[0:4] = b"XFSB"
    d[446:462] = b"\x12" * 16
    d[510:512] = b"\x55\xaa"
    assert read_layout(MemoryDisk(bytes(d))).scheme == Scheme.NONE


@pytest.mark.parametrize(("text", "device", "rest"), [
    ("(hd0)/boot", Device(HD_BASE), "/boot"),
    ("(hd0,0)/x", Device(HD_BASE, 0), "/x"),
    ("(hd0,4)", Device(HD_BASE, 4), ""),
    ("(hd0,0x1)", Device(HD_BASE, 1), ""),
    ("(hd0,1,a)", Device(HD_BASE, 1, 0), ""),
    ("(hd0,a)", Device(HD_BASE, None, 0), ""),
    ("(hd7)", Device(HD_BASE + 7), ""),
    ("(fd0)", Device(0), ""),
])
def test_device_syntax(text: str, device: Device, rest: str) -> None:
    """PVGRUB.md §4; disk_io.c set_device:953-1119."""
    assert parse_device(text) == (device, rest)


@pytest.mark.parametrize(("text", "number"), [
    ("(hd8)", 12), ("(hd0,255)", 11), ("(hd0, 0)", 11), ("(nd)", 11), ("(hdx)", 23), ("(hd0", 11), ("(sd0)", 11),
])
def test_device_syntax_errors(text: str, number: int) -> None:
    """set_device: no spaces, partitions 0..254, (nd) unknown without a network, hd0-hd7 (sane_partition)."""
    with pytest.raises(GrubError) as e:
        parse_device(text)
    assert e.value.number == number
