"""GRUB 0.97 devices and partitions: `(hdN)`, `(hdN,P)`, MBR slots, the EBR chain and (1.04+) GPT.

Modelled on stage2/disk_io.c: `set_device` (device syntax), `next_partition`/`real_open_partition`
(MBR numbering: slots 0-3 counted even when empty, only the first extended partition of each table followed,
logical partitions from 4 in EBR order) and `sane_partition` (drive numbers). PV-GRUB sees one disk per vbd;
the image under check is hd0 and there is no other.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from pvbuild.pvgrub.blockio import SECTOR, Disk, Volume
from pvbuild.pvgrub.errors import Err, GrubError

# disk_io.c / shared.h drive numbers.
HD_BASE = 0x80
NETWORK_DRIVE = 0x20
WHOLE = 0xFFFFFF  # GRUB's "no partition" value

EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})  # pc_slice.h IS_PC_SLICE_TYPE_EXTENDED
BSD_TYPES = frozenset({0xA5, 0xA6, 0xA9})  # pc_slice.h IS_PC_SLICE_TYPE_BSD
GPT_PROTECTIVE = 0xEE
# Bounds against hostile tables (GRUB itself would loop forever on a cyclic EBR chain).
MAX_EBR = 512
MAX_GPT_ENTRIES = 1024
MAXINT = 0x7FFFFFFF


class Scheme(StrEnum):
    NONE = "none"
    MBR = "mbr"
    GPT = "gpt"


@dataclass(frozen=True)
class Device:
    """A parsed GRUB device: drive number and partition (GRUB's packed form kept apart for clarity).

    `slice` is the PC slice / GPT index (0-based, GRUB numbering) or None for the whole disk; `bsd` the BSD
    sub-partition letter index or None.
    """

    drive: int
    slice: int | None = None
    bsd: int | None = None

    @property
    def is_network(self) -> bool:
        return self.drive == NETWORK_DRIVE

    def __str__(self) -> str:
        if self.drive == NETWORK_DRIVE:
            return "(nd)"
        name = f"hd{self.drive - HD_BASE}" if self.drive & HD_BASE else f"fd{self.drive}"
        parts = [name]
        if self.slice is not None:
            parts.append(str(self.slice))
        if self.bsd is not None:
            parts.append(chr(ord("a") + self.bsd))
        return "(" + ",".join(parts) + ")"


HD0 = Device(HD_BASE)
# mini-os.c: boot_drive = NETWORK_DRIVE, install_partition = 0xFFFFFF: an entry's root starts at (nd).
BOOT_DEVICE = Device(NETWORK_DRIVE)


def parse_maxint(text: str, pos: int) -> tuple[int, int] | None:
    """char_io.c safe_parse_maxint: decimal or 0x-hex; returns (value, new_pos) or None (Error 23/35)."""
    mult = 10
    i = pos
    if text[i:i + 1] == "0" and text[i + 1:i + 2].lower() == "x":
        i += 2
        mult = 16
    value = 0
    found = False
    while i < len(text):
        c = text[i].lower()
        if "0" <= c <= "9":
            digit = ord(c) - ord("0")
        elif mult == 16 and "a" <= c <= "f":
            digit = ord(c) - ord("a") + 10
        else:
            break
        found = True
        if value > (MAXINT - digit) // mult:
            return None
        value = value * mult + digit
        i += 1
    if not found:
        return None
    return value, i


def parse_device(text: str) -> tuple[Device, str]:
    """disk_io.c set_device for a string starting with '(': returns the device and the text after ')'.

    Raises GrubError 11 (unrecognised device string) for anything GRUB cannot parse, including `(nd)` (the
    network is never initialised when PV-GRUB reads a disk menu) and partitions > 254; 12 for drives >= 8
    (sane_partition).
    """
    assert text.startswith("(")
    shown = text.split(")", 1)[0] + ")"
    i = 1
    ch = text[i:i + 1]
    drive: int | None = None
    slice_: int | None = None
    bsd: int | None = None
    if ch in ("f", "h"):
        if text[i + 1:i + 2] != "d":
            raise GrubError(Err.NUMBER_PARSING, f"device {shown}")
        i += 2
        parsed = parse_maxint(text, i)
        if parsed is None:
            raise GrubError(Err.NUMBER_PARSING, f"device {shown}", code="bad-filename")
        drive, i = parsed
        if ch == "h":
            drive += HD_BASE
    elif ch not in (",", ")"):
        raise GrubError(Err.DEV_FORMAT, f"unrecognised device {shown}", code="bad-filename")
    if drive is None:
        # "(,0)" or "()" use the saved drive; PV-GRUB's saved drive is the network drive at that point.
        raise GrubError(Err.DEV_FORMAT, f"device {shown} names no drive", code="bad-filename")
    if text[i:i + 1] == ",":
        i += 1
        c = text[i:i + 1]
        if c.isdigit():
            parsed = parse_maxint(text, i)
            if not (drive & HD_BASE) or parsed is None or parsed[0] > 254:
                raise GrubError(Err.DEV_FORMAT, f"bad partition in {shown}", code="bad-filename")
            slice_, i = parsed
            if text[i:i + 1] == ",":
                i += 1
            c = text[i:i + 1]
            if c and "a" <= c <= "h":
                bsd = ord(c) - ord("a")
                i += 1
        elif c and "a" <= c <= "h":
            bsd = ord(c) - ord("a")
            i += 1
        if text[i:i + 1] != ")":
            raise GrubError(Err.DEV_FORMAT, f"unrecognised device {shown}", code="bad-filename")
    elif text[i:i + 1] != ")":
        raise GrubError(Err.DEV_FORMAT, f"unrecognised device {shown}", code="bad-filename")
    # sane_partition: hard disks hd0..hd7 only.
    if (drive & 0xFFFFFF7F) >= 8:
        raise GrubError(Err.DEV_VALUES, f"drive number in {text[:i + 1]} is out of range (hd0-hd7)",
                        code="bad-filename")
    return Device(drive, slice_, bsd), text[i + 1:]


@dataclass(frozen=True)
class Partition:
    """One partition as GRUB numbers it (`index`) and as Linux names it (`linux_number`)."""

    index: int  # GRUB's N in (hd0,N)
    type: int  # MBR type byte; for GPT the byte GRUB would see is unknown: 0 means "not an MBR type"
    start: int  # bytes
    length: int  # bytes
    scheme: Scheme
    type_guid: str | None = None
    part_uuid: str | None = None
    bootable: bool = False

    @property
    def linux_number(self) -> int:
        return self.index + 1


@dataclass
class Layout:
    """What the disk holds: the scheme GRUB would see and every partition, for reporting and root= lookup."""

    scheme: Scheme
    partitions: list[Partition] = field(default_factory=list)
    disk_signature: int | None = None  # MBR NT disk signature (PARTUUID=SSSSSSSS-PP)
    gpt_disk_guid: str | None = None
    problems: list[str] = field(default_factory=list)


def _mbr_entries(sector: bytes) -> list[tuple[int, int, int, int]]:
    """(boot flag, type, start LBA, length) for the four slots of an MBR or EBR."""
    out = []
    for slot in range(4):
        off = 446 + slot * 16
        flag = sector[off]
        ptype = sector[off + 4]
        start, length = struct.unpack_from("<II", sector, off + 8)
        out.append((flag, ptype, start, length))
    return out


def _has_signature(sector: bytes) -> bool:
    return sector[510:512] == b"\x55\xaa"


def _walk_mbr(disk: Disk) -> Iterator[Partition]:
    """next_pc_slice, iterated lazily as GRUB does: primaries 0-3 by slot (empty ones keep their numbers), then
    the logical partitions of the first extended partition, numbered from 4 in EBR order.

    An empty slot or an extended partition is yielded too (type 0 / 0x05): GRUB only matches a destination
    whose type is non-zero, so `(hd0,1)` naming an empty slot is "No such partition" and naming the
    extended container itself mounts nothing. Errors surface only when the walk reaches them, so a partition
    before a broken EBR is still found. A cyclic chain goes on numbering (GRUB finds the same logical
    partition again under a higher number) and, without a match, would loop forever: the walk stops after
    MAX_EBR records.
    """
    mbr = disk.read(0, SECTOR)
    if not _has_signature(mbr):
        raise GrubError(Err.BAD_PART_TABLE, "no 0x55AA signature in the MBR", code="partition-table-invalid")
    table = _mbr_entries(mbr)
    for slot, (flag, ptype, start, length) in enumerate(table):
        yield Partition(slot, ptype, start * SECTOR, length * SECTOR, Scheme.MBR, bootable=flag == 0x80)
    # The first extended entry of the MBR, then in each EBR; EBR offsets are relative to the first one.
    ext_offset = 0
    slice_no = 3
    for _ in range(MAX_EBR):
        nxt = next((e for e in table if e[1] in EXTENDED_TYPES), None)
        if nxt is None:
            return
        offset = ext_offset + nxt[2]
        if not ext_offset:
            ext_offset = offset
        ebr = disk.read(offset * SECTOR, SECTOR)
        if not _has_signature(ebr):
            raise GrubError(Err.BAD_PART_TABLE, f"no 0x55AA signature in the EBR at sector {offset}",
                            code="partition-table-invalid")
        table = _mbr_entries(ebr)
        for flag, ptype, start, length in table:
            # pc_slice_no only grows for non-empty, non-extended entries once past the 4 primaries.
            if ptype in EXTENDED_TYPES or ptype == 0:
                continue
            slice_no += 1
            yield Partition(slice_no, ptype, (offset + start) * SECTOR, length * SECTOR, Scheme.MBR,
                            bootable=flag == 0x80)
    raise GrubError(Err.BAD_PART_TABLE, f"the extended partition chain is longer than {MAX_EBR} records or "
                                        "cyclic: PV-GRUB would walk it forever", code="partition-table-invalid")


def _guid(raw: bytes) -> str:
    a, b, c = struct.unpack_from("<IHH", raw, 0)
    return f"{a:08x}-{b:04x}-{c:04x}-{raw[8:10].hex()}-{raw[10:16].hex()}"


LINUX_GPT_TYPES = {
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "linux data",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "linux root (x86-64)",
    "44479540-f297-41b2-9af7-d131d5f0458a": "linux root (x86)",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "linux extended boot",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "linux lvm",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "linux raid",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "linux swap",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "efi system",
    "21686148-6449-6e6f-744e-656564454649": "bios boot",
}


def _walk_gpt(disk: Disk) -> tuple[list[Partition], str, list[str]]:
    """The GPT that 1.04+ AKIs read: header at LBA 1, entries in table order, GRUB index = entry index.

    Numbering of GPT partitions in Amazon's build is UNVERIFIED (PVGRUB.md §4): we use the entry index,
    which is how the GRUB-legacy GPT patches of the distributions number them.
    """
    hdr = disk.read(SECTOR, SECTOR)
    problems: list[str] = []
    if hdr[:8] != b"EFI PART":
        raise GrubError(Err.BAD_PART_TABLE, "protective MBR but no GPT header at LBA 1",
                        code="partition-table-invalid")
    hsize = struct.unpack_from("<I", hdr, 12)[0]
    if 92 <= hsize <= SECTOR:
        crc = struct.unpack_from("<I", hdr, 16)[0]
        calc = zlib.crc32(hdr[:16] + b"\0\0\0\0" + hdr[20:hsize]) & 0xFFFFFFFF
        if crc != calc:
            problems.append("GPT header CRC mismatch")
    disk_guid = _guid(hdr[56:72])
    entries_lba, count, esize = struct.unpack_from("<QII", hdr, 72)
    if count > MAX_GPT_ENTRIES or esize < 128 or esize > 4096 or esize % 8:
        raise GrubError(Err.BAD_PART_TABLE, f"implausible GPT entry array ({count} x {esize} bytes)",
                        code="partition-table-invalid")
    raw = disk.read(entries_lba * SECTOR, count * esize)
    parts: list[Partition] = []
    for i in range(count):
        e = raw[i * esize:(i + 1) * esize]
        if e[:16] == b"\0" * 16:
            parts.append(Partition(i, 0, 0, 0, Scheme.GPT))
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        length = (last - first + 1) * SECTOR if last >= first else 0
        parts.append(Partition(i, 0x83 if _guid(e[:16]) in LINUX_GPT_TYPES else 1, first * SECTOR, length,
                               Scheme.GPT, type_guid=_guid(e[:16]), part_uuid=_guid(e[16:32])))
    return parts, disk_guid, problems


def read_layout(disk: Disk) -> Layout:
    """What the disk carries, independent of any profile (for the report and root= resolution)."""
    if disk.size < SECTOR:
        return Layout(Scheme.NONE, problems=["image is smaller than one sector"])
    mbr = disk.read(0, SECTOR)
    if not _has_signature(mbr):
        return Layout(Scheme.NONE)
    table = _mbr_entries(mbr)
    sig = struct.unpack_from("<I", mbr, 440)[0]
    if table[0][1] == GPT_PROTECTIVE or any(t == GPT_PROTECTIVE for _, t, _, _ in table):
        try:
            parts, guid, problems = _walk_gpt(disk)
            return Layout(Scheme.GPT, [p for p in parts if p.type], gpt_disk_guid=guid, problems=problems)
        except GrubError as e:
            return Layout(Scheme.GPT, problems=[e.detail])
    # A filesystem that starts at sector 0 (XFS, FAT) can end in 0x55AA too: only call it MBR when the
    # slots look like partitions.
    if not any(t for _, t, _, _ in table) or any(f not in (0, 0x80) for f, _, _, _ in table):
        return Layout(Scheme.NONE)
    found: list[Partition] = []
    seen: set[tuple[int, int]] = set()
    try:
        for p in _walk_mbr(disk):
            if p.type and p.type not in EXTENDED_TYPES:
                if (p.start, p.length) in seen:
                    return Layout(Scheme.MBR, found, disk_signature=sig,
                                  problems=["the extended partition chain is cyclic"])
                seen.add((p.start, p.length))
                found.append(p)
    except GrubError as e:
        return Layout(Scheme.MBR, found, disk_signature=sig, problems=[e.detail])
    return Layout(Scheme.MBR, found, disk_signature=sig)


def open_volume(disk: Disk, device: Device, *, gpt: bool) -> Volume:
    """disk_io.c open_partition for `device` on the one disk: the byte range a filesystem is mounted on.

    Errors as GRUB's: no such disk 21 (anything but hd0), bad partition table 5 (no 0x55AA: also what
    `(hd0,N)` gives on a partitionless image), no such partition 22 (empty slot, missing logical, BSD
    sub-partition). With `gpt` (PV-GRUB 1.04+) a protective MBR is read as GPT; without it the 0xEE slot
    is an ordinary partition of an unknown type, as on upstream PV-GRUB and AMIs <= 1.03.
    """
    if device.drive != HD_BASE:
        raise GrubError(Err.NO_DISK, f"{device}: the image is the only disk PV-GRUB sees, hd0",
                        code="partition-not-found")
    if device.slice is None and device.bsd is None:
        return Volume(disk, 0, disk.size - disk.size % SECTOR, None, str(device))
    if device.slice is None:
        raise GrubError(Err.NO_PART, f"{device}: no BSD disklabel", code="partition-not-found")
    mbr = disk.read(0, SECTOR)
    if not _has_signature(mbr):
        raise GrubError(Err.BAD_PART_TABLE, f"{device} on an image without a partition table",
                        code="partition-table-invalid")
    if gpt and any(t == GPT_PROTECTIVE for _, t, _, _ in _mbr_entries(mbr)):
        parts, _, _ = _walk_gpt(disk)
        part = next((p for p in parts if p.index == device.slice and p.type), None)
        if part is None or device.bsd is not None:
            raise GrubError(Err.NO_PART, f"{device}: no such GPT partition", code="partition-not-found")
        return Volume(disk, part.start, part.length, None, str(device))
    part = next((p for p in _walk_mbr(disk) if p.index == device.slice and p.type), None)
    if part is None or device.bsd is not None:
        raise GrubError(Err.NO_PART, f"{device}: no such partition", code="partition-not-found")
    return Volume(disk, part.start, part.length, part.type, str(device))
