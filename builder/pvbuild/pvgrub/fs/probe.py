"""What is on a volume: blkid's answer (for root=LABEL=/UUID= and for naming what PV-GRUB cannot read) and
GRUB's answer (which of the PV build's filesystem drivers would mount it, in `fsys_table` order).

Two different questions, two different rule sets:

- `identify(vol)`: a blkid-like probe (util-linux libblkid, `blkid -p`), by magic plus the sanity checks libblkid
  makes, returning blkid's TYPE, UUID and LABEL: linux_raid_member (md 0.90 at the end, 1.0 at the end,
  1.1 at 0, 1.2 at 4 KiB), LVM2_member, crypto_LUKS (1 and 2), vfat (FAT12/16/32), swap (SWAPSPACE2 and
  SWAP-SPACE), xfs (fs/xfs.py), ext2/3/4 (fs/ext2.py), reiserfs (3.5, 3.6, JR), jfs, iso9660, minix,
  squashfs, btrfs. Reads are bounded (a few KiB per format; the FAT32 label search follows at most 100
  clusters, as libblkid does).
- `GRUB_PROBE_ORDER` / `grub_mount_sequence(vol)` / `grub_recognises(vol)`: GRUB 0.97's attempt_mount
  (disk_io.c:427) over the drivers the stubdom Makefile compiles (xen/stubdom/grub/Makefile: ext2fs, fat, ffs,
  iso9660, jfs, minix, reiserfs, ufs2, vstafs, xfs, plus tftp, whose mount needs the network and is therefore
  left out for disks), in disk_io.c's fsys_table order (l.48-89). The drivers' `*_mount` checks are repeated
  here byte for byte (partition type, superblock magic, the few sanity checks they make), including GRUB's
  sticky error number: a mount function whose read fails leaves errnum set, every later read does nothing,
  and the device fails with that error instead of Error 17. btrfs is not in the list: its driver is patched
  into the tree (61btrfs) but not compiled. LVM, LUKS, md metadata and swap are never readable by PV-GRUB.
"""

from __future__ import annotations

import importlib
import importlib.util
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pvbuild.pvgrub.blockio import SECTOR, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs import xfs
from pvbuild.pvgrub.fs.base import Filesystem, FsIdentity

# =========================================================================================================
# GRUB's side: fsys_table of the PV build
# =========================================================================================================


class GrubDriver(StrEnum):
    """A filesystem driver compiled into PV-GRUB, by the name GRUB uses (fsys_table[].name)."""

    FAT = "fat"
    EXT2FS = "ext2fs"
    MINIX = "minix"
    REISERFS = "reiserfs"
    VSTAFS = "vstafs"
    JFS = "jfs"
    XFS = "xfs"
    UFS2 = "ufs2"
    ISO9660 = "iso9660"
    FFS = "ffs"

    @property
    def reader(self) -> str:
        """The module of pvbuild's reader for this driver: pvbuild.pvgrub.fs.<reader> (fsys_<name>.c's twin)."""
        return "ext2" if self is GrubDriver.EXT2FS else self.value

    @property
    def emulated(self) -> bool:
        """True if pvbuild reads files through this driver (its reader module exists); False if it only
        recognises the volume."""
        return importlib.util.find_spec(f"pvbuild.pvgrub.fs.{self.reader}") is not None


def reader_mount(driver: GrubDriver) -> Callable[..., Filesystem | None] | None:
    """The `mount(vol, *, arch)` of the driver's reader module, or None when pvbuild has no reader for it."""
    if not driver.emulated:
        return None
    module = importlib.import_module(f"pvbuild.pvgrub.fs.{driver.reader}")
    mount: Callable[..., Filesystem | None] = module.mount
    return mount

# disk_io.c fsys_table (l.48-89) with the FSYS_* the stubdom Makefile defines; tftp (first in the table) is
# omitted: tftp_mount succeeds only on the network drive. FSYS_BTRFS is not defined by the Makefile.
GRUB_PROBE_ORDER: tuple[GrubDriver, ...] = (
    GrubDriver.FAT, GrubDriver.EXT2FS, GrubDriver.MINIX, GrubDriver.REISERFS, GrubDriver.VSTAFS,
    GrubDriver.JFS, GrubDriver.XFS, GrubDriver.UFS2, GrubDriver.ISO9660, GrubDriver.FFS,
)

# pc_slice.h partition types
FAT_SLICE_TYPES = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0xDE})  # IS_PC_SLICE_TYPE_FAT (hidden bit cleared)
HIDDEN_SLICE_FLAG = 0x10
_EXT2_TYPES = frozenset({0x83, 0xFD})  # PC_SLICE_TYPE_EXT2FS, PC_SLICE_TYPE_LINUX_RAID
_MINIX_TYPES = frozenset({0x80, 0x81})
_VSTAFS_TYPE = 0x9E


def current_slice(vol: Volume) -> int:
    """GRUB's current_slice for a volume: the MBR type byte; 0 for the whole disk.

    GPT partitions (part_type None on a partition) are given 0 too: how Amazon's GPT-capable PV-GRUB fills
    current_slice is not known (UNVERIFIED in PVGRUB.md §4).
    """
    return vol.part_type if vol.part_type is not None else 0


def is_whole_disk(vol: Volume) -> bool:
    """current_partition == 0xFFFFFF: the volume is `(hdN)` itself."""
    return vol.part_type is None and vol.start == 0 and "," not in vol.name


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _bsf(v: int) -> int:
    """GRUB's log2 (the bsf instruction): index of the lowest set bit; 0 for 0 (undefined in C)."""
    return (v & -v).bit_length() - 1 if v else 0


class _Probe:
    """GRUB's devread with a sticky errnum, for the *_mount replicas."""

    def __init__(self, vol: Volume) -> None:
        self.vol = vol
        self.part_length = vol.length // SECTOR
        self.errnum = 0
        self.detail = ""
        self.fsys_buf = bytearray(0x8000)

    def devread(self, sector: int, byte_offset: int, byte_len: int) -> bytes | None:
        sector &= 0xFFFFFFFF
        if ((sector + ((byte_offset + byte_len - 1) >> 9)) & 0xFFFFFFFF) >= self.part_length:
            self.errnum = Err.OUTSIDE_PART
            self.detail = f"read of {byte_len} bytes at sector {sector} + {byte_offset} outside {self.vol.name}"
            return None
        if byte_len <= 0:
            return b""
        if self.errnum:
            return None
        try:
            return self.vol.read(sector * SECTOR + byte_offset, byte_len)
        except GrubError as e:
            self.errnum = e.number
            self.detail = e.detail
            return None

    def rawread_whole(self, sector: int, byte_len: int) -> bytes | None:
        """iso9660_devread: no partition check, only the disk's end (rawread's geometry check)."""
        if self.errnum:
            return None
        try:
            return self.vol.disk.read(self.vol.start + sector * SECTOR, byte_len)
        except GrubError:
            self.errnum = Err.GEOM
            self.detail = f"sector {sector} is past the end of the disk"
            return None


def _substring_gt0(magic: bytes, field: bytes) -> bool:
    """char_io.c substring(magic, field) > 0: the field neither equals nor starts with the magic."""
    f = field.split(b"\0", 1)[0]
    return not f.startswith(magic)


def _fat_mount(p: _Probe) -> bool:
    """fsys_fat.c:74 fat_mount."""
    s = current_slice(p.vol)
    if s != 0 and (s & ~HIDDEN_SLICE_FLAG) not in FAT_SLICE_TYPES:
        return False
    bpb = p.devread(0, 0, 64)
    if bpb is None:
        return False
    bytes_per_sect = int.from_bytes(bpb[11:13], "little")
    spc = bpb[13]
    if spc == 0:
        return False
    reserved, num_fats = int.from_bytes(bpb[14:16], "little"), bpb[16]
    dir_entries, short_sectors = int.from_bytes(bpb[17:19], "little"), int.from_bytes(bpb[19:21], "little")
    media = bpb[21]
    fat_length16, flags = int.from_bytes(bpb[22:24], "little"), int.from_bytes(bpb[40:42], "little")
    long_sectors, fat32_length = struct.unpack_from("<II", bpb, 32)
    sectsize_bits = _bsf(bytes_per_sect)
    clustsize_bits = sectsize_bits + _bsf(spc)
    num_sectors = _i32(short_sectors if short_sectors else long_sectors)
    fat_offset = reserved
    fat_length = _i32(fat_length16 if fat_length16 else fat32_length)
    root_offset = _i32(fat_offset + num_fats * fat_length)
    root_max = 32 * dir_entries
    data_offset = _i32(root_offset + ((root_max - 1) >> sectsize_bits) + 1)
    num_clust = _i32(2 + _cdiv(_i32(num_sectors - data_offset), spc))
    if not fat_length16:
        if dir_entries:
            return False
        if flags & 0x0080:
            active = flags & 0x000F
            if active >= num_fats:
                return False
            fat_offset = _i32(fat_offset + active * fat_length)
        fat_size = 8
    else:
        if not root_max:
            return False
        fat_size = 4 if num_clust > 4087 else 3
    if (bytes_per_sect != 1 << sectsize_bits or bytes_per_sect != SECTOR
            or spc != 1 << (clustsize_bits - sectsize_bits) or num_clust <= 2
            or _cdiv(_i32(fat_size * num_clust), 2 * SECTOR) > fat_length):
        return False
    raw = p.devread(fat_offset, 0, 4)
    if raw is None:
        return False
    first_fat = int.from_bytes(raw, "little")
    if fat_size == 8:
        first_fat &= 0x0FFFFFFF
        magic = 0x0FFFFF00
    elif fat_size == 4:
        first_fat &= 0xFFFF
        magic = 0xFF00
    else:
        first_fat &= 0xFFF
        magic = 0x0F00
    return (first_fat | 0x8) == (magic | media | 0x8)


def _ext2fs_mount(p: _Probe) -> bool:
    """fsys_ext2fs.c:413 ext2fs_mount: partition type 0 / 0x83 / 0xFD and the magic 0xEF53 at 1024+56."""
    s = current_slice(p.vol)
    if s != 0 and s not in _EXT2_TYPES:
        return False
    if p.part_length < 2 + 1024 // SECTOR:
        return False
    sb = p.devread(2, 0, 1024)
    if sb is None:
        return False
    p.fsys_buf[0:1024] = sb  # SUPERBLOCK is FSYS_BUF
    return int.from_bytes(sb[56:58], "little") == 0xEF53


def _minix_mount(p: _Probe) -> bool:
    """fsys_minix.c:161 minix_mount: partition type 0 / 0x80 / 0x81 and magic 0x137F or 0x138F."""
    s = current_slice(p.vol)
    if s != 0 and s not in _MINIX_TYPES:
        return False
    if p.part_length < 2:
        return False
    sb = p.devread(2, 0, 24)
    if sb is None:
        return False
    p.fsys_buf[0:24] = sb
    return int.from_bytes(sb[16:18], "little") in (0x137F, 0x138F)


_REISER_MAGICS = (b"ReIsEr3Fs", b"ReIsEr2Fs", b"ReIsErFs")


def _reiserfs_mount(p: _Probe, arch: str) -> bool:
    """fsys_reiserfs.c:576 reiserfs_mount (superblock at 64 KiB, else the 3.5 position at 8 KiB), run by the
    ReiserFS reader itself (fs/reiserfs.py grub_mount: journal replay, the root block read into FSYS_BUF) unless
    an earlier driver left errnum set; then every read fails, as below."""
    if not p.errnum:
        from pvbuild.pvgrub.fs import reiserfs

        run, _, ok = reiserfs.grub_mount(p.vol, bytes(p.fsys_buf), arch)
        if run.errnum:
            p.errnum, p.detail = run.errnum, run.dev.detail
        p.fsys_buf[:reiserfs.CACHE_SIZE] = run.mem[:reiserfs.CACHE_SIZE]
        return ok
    size = 204  # sizeof(struct reiserfs_super_block)
    superblock = 65536 // SECTOR
    sb = None
    if p.part_length >= superblock + size // SECTOR:
        sb = p.devread(superblock, 0, size)
    if (sb is None or all(_substring_gt0(m, sb[52:68]) for m in _REISER_MAGICS)
            or (int.from_bytes(sb[12:16], "little") * int.from_bytes(sb[44:46], "little")) & 0xFFFFFFFF
            <= 65536):
        superblock = 8192 // SECTOR
        if p.part_length < superblock + size // SECTOR:
            return False
        sb = p.devread(superblock, 0, size)
        if sb is None:
            return False
        if all(_substring_gt0(m, sb[52:68]) for m in _REISER_MAGICS):
            if _substring_gt0(b"ReIsErFs", sb[20:36]):
                return False
            # pre-journaling superblock: blocksize 4096, no journal, version 0
            sb = sb[:12] + bytes(4) + sb[16:44] + (4096).to_bytes(2, "little") + sb[46:72] + bytes(2) + sb[74:]
    version = int.from_bytes(sb[72:74], "little")
    if version > 2:
        return False
    blocksize = int.from_bytes(sb[44:46], "little")
    shift = _bsf(blocksize)
    if blocksize < 512 or blocksize > 8192 or shift < 9 or (512 << (shift - 9)) != blocksize:
        return False
    root_block = int.from_bytes(sb[8:12], "little")
    root = p.devread((root_block << (shift - 9)) & 0xFFFFFFFF, 0, blocksize)
    if root is None:
        return False
    return int.from_bytes(root[0:2], "little") < 7  # tree_depth < MAX_HEIGHT


def _vstafs_mount(p: _Probe, arch: str) -> bool:
    """fsys_vstafs.c:46 vstafs_mount: type 0 / 0x9E and fs_magic 0xDEADFACE (an `unsigned long`: 8 bytes on
    x86_64)."""
    s = current_slice(p.vol)
    if s not in (0, _VSTAFS_TYPE):
        return False
    first = p.devread(0, 0, 512)
    if first is None:
        return False
    p.fsys_buf[0:512] = first
    width = 8 if arch == "x86_64" else 4
    return int.from_bytes(first[0:width], "little") == 0xDEADFACE


def _jfs_mount(p: _Probe) -> bool:
    """fsys_jfs.c:207 jfs_mount: at least 16 MiB, "JFS1" at 32 KiB, the fileset inode readable. No type check."""
    if p.part_length < 0x1000000 // SECTOR:
        return False
    sb = p.devread(0x8000 // SECTOR, 0, 128)
    if sb is None or int.from_bytes(sb[0:4], "little") != 0x3153464A:
        return False
    return p.devread((0xB000 // SECTOR) + 16, 0, 512) is not None


def _xfs_mount(p: _Probe, arch: str) -> bool:
    if p.errnum:  # xfs_mount's devread would fail
        return False
    return xfs.mount(p.vol, arch=arch) is not None


def _ufs2_mount(p: _Probe) -> bool:
    """fsys_ufs2.c:82 ufs2_mount: whole disk (type 0), FS_UFS2_MAGIC at 1372 of a superblock at 64K, 8K, 0
    or 256K (the partition-size check compares bytes with sectors, as in C)."""
    if current_slice(p.vol) != 0:
        return False
    for where in (65536, 8192, 0, 262144):
        if p.part_length < where + 8192 // 512:
            continue
        sb = p.devread(0, where, 8192)
        if sb is None:
            continue
        if int.from_bytes(sb[1372:1376], "little") == 0x19540119:
            return True
    return False


def _iso9660_mount(p: _Probe) -> bool:
    """fsys_iso9660.c:107 iso9660_mount: whole disk only; a primary volume descriptor "CD001" in sectors
    16-31 (2 KiB sectors)."""
    if not is_whole_disk(p.vol):
        return False
    for sector in range(16, 32):
        desc = p.rawread_whole(sector * 4, 2048)
        if desc is None:
            break
        if desc[0] == 1 and desc[1:6] == b"CD001":
            return True
    return False


def _ffs_mount(p: _Probe) -> bool:
    """fsys_ffs.c:81 ffs_mount: type 0, FS_MAGIC 0x011954 at 1372 of the superblock at 8 KiB."""
    if current_slice(p.vol) != 0 or p.part_length < 16 + 8192 // 512:
        return False
    sb = p.devread(16, 0, 8192)
    return sb is not None and int.from_bytes(sb[1372:1376], "little") == 0x011954


@dataclass(frozen=True)
class ProbeOutcome:
    """attempt_mount's result: the driver that mounted (None: none did) and the errnum GRUB is left with
    (0 when a driver mounted; Err.FSYS_MOUNT when none did and no read failed; a read error otherwise)."""

    driver: GrubDriver | None
    errnum: int
    detail: str = ""


def _run_sequence(vol: Volume, upto: GrubDriver | None, arch: str) -> tuple[ProbeOutcome, _Probe]:
    p = _Probe(vol)
    mounts: dict[GrubDriver, Callable[[], bool]] = {
        GrubDriver.FAT: lambda: _fat_mount(p),
        GrubDriver.EXT2FS: lambda: _ext2fs_mount(p),
        GrubDriver.MINIX: lambda: _minix_mount(p),
        GrubDriver.REISERFS: lambda: _reiserfs_mount(p, arch),
        GrubDriver.VSTAFS: lambda: _vstafs_mount(p, arch),
        GrubDriver.JFS: lambda: _jfs_mount(p),
        GrubDriver.XFS: lambda: _xfs_mount(p, arch),
        GrubDriver.UFS2: lambda: _ufs2_mount(p),
        GrubDriver.ISO9660: lambda: _iso9660_mount(p),
        GrubDriver.FFS: lambda: _ffs_mount(p),
    }
    for driver in GRUB_PROBE_ORDER:
        if driver == upto:
            return ProbeOutcome(None, p.errnum, p.detail), p
        if mounts[driver]():
            return ProbeOutcome(driver, 0), p
    if p.errnum:
        return ProbeOutcome(None, p.errnum, p.detail), p
    return ProbeOutcome(None, Err.FSYS_MOUNT, f"no driver of the PV build mounts {vol.name}"), p


def grub_mount_sequence(vol: Volume, *, arch: str = "x86_64") -> ProbeOutcome:
    """disk_io.c attempt_mount (l.427) over GRUB_PROBE_ORDER, with the *_mount checks repeated here.

    ext2fs uses GRUB's ext2fs_mount test (partition type and magic), xfs uses xfs.mount.
    """
    return _run_sequence(vol, None, arch)[0]


def grub_recognises(vol: Volume, *, arch: str = "x86_64") -> str | None:
    """The driver PV-GRUB would mount this volume with, if it is one pvbuild does not emulate.

    None when no driver mounts it, or when the first that does is one pvbuild reads (ext2fs, xfs, reiserfs, jfs).
    So the caller can say "PV-GRUB would read this FAT, but the emulator cannot verify it yet".
    """
    out = grub_mount_sequence(vol, arch=arch)
    if out.driver is not None and not out.driver.emulated:
        return out.driver.value
    return None


def fsys_buf_after_probe(vol: Volume, upto: str, *, arch: str = "x86_64") -> bytearray:
    """GRUB's FSYS_BUF (32 KiB, zero at start) as the drivers before `upto` in fsys_table leave it.

    ext2fs_mount reads the ext2 superblock position (bytes 1024-2047) into FSYS_BUF, minix_mount 24 bytes of
    it, vstafs_mount sector 0: whenever their partition-type test lets them (fat_mount writes only at
    FSYS_BUF+32256; reiserfs its root block (and a copy as the leaf) once its superblock checks passed, jfs only
    after its magic matched).
    """
    _, p = _run_sequence(vol, GrubDriver(upto), arch)
    return p.fsys_buf


# =========================================================================================================
# blkid's side
# =========================================================================================================


def _read(vol: Volume, off: int, n: int) -> bytes | None:
    if off < 0 or n < 0 or off + n > vol.length:
        return None
    try:
        return vol.read(off, n)
    except GrubError:
        return None


def _label(raw: bytes) -> str | None:
    """blkid_probe_set_label: up to the first NUL, trailing blanks removed; empty -> no LABEL."""
    s = raw.split(b"\0", 1)[0].rstrip(b" \t\n\r\v\f")
    return s.decode("utf-8", "replace") if s else None


def _uuid(raw: bytes) -> str | None:
    """blkid_probe_set_uuid: DCE form, nothing for an all-zero UUID."""
    return xfs.format_uuid(raw) if any(raw) else None


# --- RAID, LVM, LUKS ------------------------------------------------------------------------------------
_MD_MAGIC = 0xA92B4EFC
_MD_RESERVED = 0x10000


def _md0(vol: Volume, off: int) -> FsIdentity | None:
    sb = _read(vol, off, 64)
    if sb is None:
        return None
    order: Literal["little", "big"]
    if int.from_bytes(sb[0:4], "little") == _MD_MAGIC:
        order = "little"
    elif int.from_bytes(sb[0:4], "big") == _MD_MAGIC:
        order = "big"
    else:
        return None
    ma, mi, pa = (int.from_bytes(sb[i:i + 4], order) for i in (4, 8, 12))
    size = int.from_bytes(sb[32:36], order) << 10
    if vol.length < size + _MD_RESERVED or off < size:
        return None
    words = [sb[20:24]] + ([sb[52:56], sb[56:60], sb[60:64]] if mi >= 90 else [bytes(4)] * 3)
    raw = b"".join(w[::-1] if order == "little" else w for w in words)
    return FsIdentity("linux_raid_member", _uuid(raw), None, (f"{ma}.{mi}.{pa}",))


def _md1(vol: Volume, off: int, version: str) -> FsIdentity | None:
    sb = _read(vol, off, 256)
    if sb is None or int.from_bytes(sb[0:4], "little") != _MD_MAGIC:
        return None
    if int.from_bytes(sb[4:8], "little") != 1 or int.from_bytes(sb[144:152], "little") != off >> 9:
        return None
    max_dev = int.from_bytes(sb[220:224], "little")
    if max_dev > 1920:  # bound: 256 + 2*max_dev bytes of checksummed area (mdadm allows up to 1920 devices)
        return None
    area = _read(vol, off, 256 + 2 * max_dev)
    if area is None:
        return None
    csum = -int.from_bytes(area[216:220], "little")
    n4 = len(area) // 4 * 4
    csum += sum(struct.unpack_from(f"<{n4 // 4}I", area))
    if len(area) - n4 == 2:
        csum += int.from_bytes(area[n4:n4 + 2], "little")
    csum &= (1 << 64) - 1
    csum = (csum >> 32) + (csum & 0xFFFFFFFF)
    if csum != int.from_bytes(sb[216:220], "little"):
        return None
    return FsIdentity("linux_raid_member", _uuid(sb[16:32]), _label(sb[32:64]), (version,))


def _linux_raid(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/linux_raid.c probe_raid."""
    size = vol.length
    if size > _MD_RESERVED:
        found = _md0(vol, (size & ~(_MD_RESERVED - 1)) - _MD_RESERVED)
        if found is not None:
            return found
        found = _md1(vol, (size & ~(0x1000 - 1)) - 0x2000, "1.0")
        if found is not None:
            return found
    return _md1(vol, 0, "1.1") or _md1(vol, 0x1000, "1.2")


def lvm_crc(data: bytes) -> int:
    tab = (0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4, 0x4DB26158, 0x5005713C,
           0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C, 0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C)
    crc = 0xF597A6CF
    for b in data:
        crc ^= b
        crc = (crc >> 4) ^ tab[crc & 0xF]
        crc = (crc >> 4) ^ tab[crc & 0xF]
    return crc


def lvm_uuid(raw: bytes) -> str:
    """LVM's 32-character id with dashes as blkid (and pvs) print it: 6-4-4-4-4-4-6."""
    s = raw.decode("ascii", "replace")
    return "-".join((s[0:6], s[6:10], s[10:14], s[14:18], s[18:22], s[22:26], s[26:32]))


def _lvm2(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/lvm.c probe_lvm2: "LABELONE" in one of sectors 0-3, right sector number, CRC."""
    for sector in range(4):
        buf = _read(vol, sector * SECTOR, SECTOR)
        if buf is None or buf[0:8] != b"LABELONE" or buf[24:32] != b"LVM2 001":
            continue
        if int.from_bytes(buf[8:16], "little") != sector:
            continue
        if lvm_crc(buf[20:SECTOR]) != int.from_bytes(buf[16:20], "little"):
            continue
        return FsIdentity("LVM2_member", lvm_uuid(buf[32:64]), None, ("LVM2 001",))
    return None


def _luks(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/luks.c probe_luks, primary header only (as `blkid -p`, a safe probe, does)."""
    hdr = _read(vol, 0, 512)
    if hdr is None or hdr[0:6] != b"LUKS\xba\xbe":
        return None
    version = int.from_bytes(hdr[6:8], "big")
    if version == 2 and int.from_bytes(hdr[256:264], "big") != 0:
        return None
    uuid = hdr[168:208].split(b"\0", 1)[0].rstrip(b" ").decode("ascii", "replace") or None
    label = _label(hdr[24:72]) if version == 2 else None
    return FsIdentity("crypto_LUKS", uuid, label, (f"luks{version}",))


# --- filesystems -------------------------------------------------------------------------------------------
def _fat_label_search(vol: Volume, offset: int, entries: int) -> bytes | None:
    for i in range(min(entries, 65536)):
        ent = _read(vol, offset + 32 * i, 32)
        if ent is None or ent[0] == 0:
            return None
        attr = ent[11]
        if ent[0] == 0xE5 or ent[20:22] != b"\0\0" or ent[26:28] != b"\0\0" or (attr & 0x3F) == 0x0F:
            continue
        if attr & (0x08 | 0x10) == 0x08:
            name = bytearray(ent[0:11])
            if name[0] == 0x05:
                name[0] = 0xE5
            return bytes(name)
    return None


def _vfat(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/vfat.c probe_vfat."""
    bs = _read(vol, 0, 512)
    if bs is None:
        return None
    if (bs[0x52:0x57] == b"MSWIN" or bs[0x52:0x5A] == b"FAT32   " or bs[0x36:0x3B] == b"MSDOS"
            or bs[0x36:0x3E] in (b"FAT16   ", b"FAT12   ", b"FAT     ")):
        magic_len = 8
    elif bs[0] in (0xEB, 0xE9):
        magic_len = 1
    elif bs[0x1FE:0x200] == b"\x55\xaa":
        magic_len = 2
    else:
        return None
    if magic_len <= 2 and (bs[0x1FE:0x200] != b"\x55\xaa" or bs[0x36:0x3E] in (b"JFS     ", b"HPFS    ")):
        return None
    fats, reserved, media, spc = bs[0x10], int.from_bytes(bs[0x0E:0x10], "little"), bs[0x15], bs[0x0D]
    if not fats or not reserved or not (media >= 0xF8 or media == 0xF0):
        return None
    if spc == 0 or spc & (spc - 1):
        return None
    sector_size = int.from_bytes(bs[0x0B:0x0D], "little")
    if sector_size & (sector_size - 1) or not 512 <= sector_size <= 4096:
        return None
    dir_entries = int.from_bytes(bs[0x11:0x13], "little")
    sect_count = int.from_bytes(bs[0x13:0x15], "little") or int.from_bytes(bs[0x20:0x24], "little")
    fat_length16 = int.from_bytes(bs[0x16:0x18], "little")
    fat32_length = int.from_bytes(bs[0x24:0x28], "little")
    fat_size = (fat_length16 or fat32_length) * fats
    dir_size = (dir_entries * 32 + sector_size - 1) // sector_size
    cluster_count = ((sect_count - (reserved + fat_size + dir_size)) & 0xFFFFFFFF) // spc
    max_count = 0x0FFFFFF6 if (not fat_length16 and fat32_length) else (
        0xFFF4 if cluster_count > 0xFF4 else 0xFF4)
    if cluster_count > max_count:
        return None
    vol_label: bytes | None = None
    serno: bytes | None = None
    version: str | None = None
    if fat_length16:
        vol_label = _fat_label_search(vol, (reserved + fat_size) * sector_size, dir_entries)
        if bs[0x26] in (0x28, 0x29):
            serno = bs[0x27:0x2B]
        version = "FAT12" if cluster_count < 0xFF4 else ("FAT16" if cluster_count < 0xFFF4 else None)
    elif fat32_length:
        cluster_bytes = spc * sector_size
        start_data = reserved + fat_size
        entries = (fat32_length * sector_size) // 4
        nxt = int.from_bytes(bs[0x2C:0x30], "little")
        maxloop = 100
        while nxt and nxt < entries:
            maxloop -= 1
            if not maxloop:
                break
            off = (start_data + (nxt - 2) * spc) * sector_size
            vol_label = _fat_label_search(vol, off, cluster_bytes // 32)
            if vol_label is not None:
                break
            fat_entry = _read(vol, reserved * sector_size + nxt * 4, 4)
            if fat_entry is None:
                break
            nxt = int.from_bytes(fat_entry, "little") & 0x0FFFFFFF
        version = "FAT32"
        serno = bs[0x43:0x47]
        fsinfo_sect = int.from_bytes(bs[0x30:0x32], "little")
        if fsinfo_sect:
            fsinfo = _read(vol, fsinfo_sect * sector_size, 512)
            if fsinfo is None:
                return None
            if fsinfo[0:4] not in (b"RRaA", b"RRdA", b"\0\0\0\0") or fsinfo[484:488] not in (b"rrAa", b"\0\0\0\0"):
                return None
    uuid = f"{serno[3]:02X}{serno[2]:02X}-{serno[1]:02X}{serno[0]:02X}" if serno is not None else None
    label = _label(vol_label) if vol_label is not None else None
    return FsIdentity("vfat", uuid, label, (version,) if version else ())


_TOI_MAGIC = b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c"


def _swap(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/swap.c probe_swap (the signature at the end of the first page, 4-64 KiB pages)."""
    if vol.length < 10 * 4096:
        return None
    for page in (0x1000, 0x2000, 0x4000, 0x8000, 0x10000):
        sig = _read(vol, page - 10, 10)
        if sig not in (b"SWAP-SPACE", b"SWAPSPACE2"):
            continue
        head = _read(vol, 0, 8)
        if head == _TOI_MAGIC:
            return None
        if sig == b"SWAP-SPACE":
            return FsIdentity("swap", None, None, ("0",))
        hdr = _read(vol, 1024, 516)  # struct swap_header_v1_2 without bootbits
        if hdr is None:
            return None
        ver_le, lastpage = int.from_bytes(hdr[0:4], "little"), int.from_bytes(hdr[4:8], "little")
        if ver_le != 1 and int.from_bytes(hdr[0:4], "big") != 1:
            continue
        if lastpage == 0:
            continue
        label = uuid = None
        pad32 = hdr[44 + 128:44 + 132]
        pad33 = hdr[44 + 132:44 + 136]
        if pad32 == bytes(4) and pad33 == bytes(4):
            label = _label(hdr[28:44]) if hdr[28] else None
            uuid = _uuid(hdr[12:28])
        return FsIdentity("swap", uuid, label, ("1",))
    return None


def _ext(vol: Volume) -> FsIdentity | None:
    from pvbuild.pvgrub.fs import ext2

    return ext2.identify(vol)


def _reiserfs(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/reiserfs.c probe_reiser (magics tried in libblkid's order)."""
    if vol.length < 128 * 1024:
        return None
    for kboff, sboff, magic in ((8, 0x34, b"ReIsErFs"), (64, 0x34, b"ReIsEr2Fs"), (64, 0x34, b"ReIsEr3Fs"),
                                (64, 0x34, b"ReIsErFs"), (8, 20, b"ReIsErFs")):
        sb = _read(vol, kboff * 1024, 116)
        if sb is None or sb[sboff:sboff + len(magic)] != magic:
            continue
        blocksize = int.from_bytes(sb[44:46], "little")
        if blocksize >> 9 == 0:
            continue
        if kboff // (blocksize >> 9) > int.from_bytes(sb[12:16], "little") // 2:
            continue
        label = uuid = None
        if magic[6:7] in (b"2", b"3"):
            label = _label(sb[100:116]) if sb[100] else None
            uuid = _uuid(sb[84:100])
        version = {b"3": "JR", b"2": "3.6"}.get(magic[6:7], "3.5")
        return FsIdentity("reiserfs", uuid, label, (version,))
    return None


def _jfs(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/jfs.c probe_jfs."""
    if vol.length < 16 * 1024 * 1024:
        return None
    sb = _read(vol, 32 * 1024, 184)
    if sb is None or sb[0:4] != b"JFS1":
        return None
    bsize, l2bsize, l2bfactor, pbsize, l2pbsize = struct.unpack_from("<IHHIH", sb, 16)
    if l2bsize > 31 or l2pbsize > 31 or bsize != 1 << l2bsize or pbsize != 1 << l2pbsize:
        return None
    if l2bsize - l2pbsize != l2bfactor:
        return None
    return FsIdentity("jfs", _uuid(sb[136:152]), _label(sb[152:168]) if sb[152] else None)


def _iso_date_uuid(d: bytes) -> str | None:
    digits = d[0:16]
    if digits == b"0" * 16 and d[16] == 0:
        return None
    s = digits.decode("latin-1")
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}-{s[8:10]}-{s[10:12]}-{s[12:14]}-{s[14:16]}"


def _iso9660(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/iso9660.c probe_iso9660 (ISO 9660 and Joliet; High Sierra not handled)."""
    first = _read(vol, 0x8000, 6)
    if first is None or first[1:6] != b"CD001":
        return None
    pvd = joliet = None
    for i in range(16):
        desc = _read(vol, 0x8000 + i * 2048, 2048)
        if desc is None or desc[0] == 255:
            break
        if pvd is None and desc[0] == 1:
            pvd = desc
        elif joliet is None and desc[0] == 2 and desc[88:91] in (b"%/@", b"%/C", b"%/E"):
            joliet = desc
    if pvd is None:
        return None
    if int.from_bytes(pvd[128:130], "little") == 0:
        return None
    uuid = _iso_date_uuid(pvd[830:847]) or _iso_date_uuid(pvd[813:830])
    ascii_label = _label(pvd[40:72])
    label = ascii_label
    if joliet is not None:
        jl = joliet[40:72].decode("utf-16-be", "replace").split("\0", 1)[0].rstrip()
        # libblkid merge_utf16be_ascii: the Joliet label (16 characters at most) extended by the PVD label
        # when it is a prefix of it (non-representable characters stored as '_' in the PVD)
        if ascii_label and len(jl) <= len(ascii_label) and all(
                b in (a, "_") for a, b in zip(jl, ascii_label, strict=False)):
            label = jl + ascii_label[len(jl):]
        else:
            label = jl or None
    features = ("Joliet Extension",) if joliet is not None else ()
    return FsIdentity("iso9660", uuid, label, features)


def _minix(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/minix.c probe_minix (versions 1-3, either byte order)."""
    data = _read(vol, 1024, 32)
    if data is None:
        return None
    version = 0
    order: Literal["little", "big"] = "little"
    for order in ("little", "big"):
        m = int.from_bytes(data[16:18], order)
        if m in (0x137F, 0x138F):
            version = 1
        elif m in (0x2468, 0x2478):
            version = 2
        elif int.from_bytes(data[24:26], "little") == 0x4D5A:
            version = 3
        if version:
            break
    if not version:
        return None

    def u16(o: int) -> int:
        return int.from_bytes(data[o:o + 2], order)

    def u32(o: int) -> int:
        return int.from_bytes(data[o:o + 4], order)

    if version in (1, 2):
        state = u16(18)
        if state & (0x0001 | 0x0002) != state:
            return None
        zones = u32(20) if version == 2 else u16(2)
        ninodes, imaps, zmaps, firstz, zone_size = u16(0), u16(4), u16(6), u16(8), u16(10)
    else:
        zones, ninodes = u32(20), u32(0)
        imaps, zmaps, firstz, zone_size = u16(6), u16(8), u16(10), u16(12)
    if zone_size != 0 or ninodes in (0, 0xFFFFFFFF):
        return None
    if imaps * 1024 * 8 < ninodes + 1 or firstz > zones or zmaps * 1024 * 8 < zones - firstz + 1:
        return None
    if _read(vol, 0x438, 2) == b"\x53\xef" or _read(vol, 0x400, 4) == b"\xe2\xe1\xf5\xe0":
        return None
    return FsIdentity("minix", None, None, (f"v{version}",))


def _squashfs(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/squashfs.c: "hsqs" with version >= 4 is squashfs, older ones squashfs3."""
    sb = _read(vol, 0, 32)
    if sb is None:
        return None
    if sb[0:4] == b"hsqs":
        major, minor = int.from_bytes(sb[28:30], "little"), int.from_bytes(sb[30:32], "little")
    elif sb[0:4] == b"sqsh":
        major, minor = int.from_bytes(sb[28:30], "big"), int.from_bytes(sb[30:32], "big")
    else:
        return None
    return FsIdentity("squashfs" if major >= 4 and sb[0:4] == b"hsqs" else "squashfs3", None, None,
                      (f"{major}.{minor}",))


def _btrfs(vol: Volume) -> FsIdentity | None:
    """libblkid superblocks/btrfs.c probe_btrfs (primary superblock at 64 KiB, crc32c checked)."""
    sb = _read(vol, 0x10000, 4096)
    if sb is None or sb[0x40:0x48] != b"_BHRfS_M":
        return None
    csum_type = int.from_bytes(sb[196:198], "little")
    if csum_type == 0 and xfs.crc32c(sb[32:4096]) != int.from_bytes(sb[0:4], "little"):
        return None
    if int.from_bytes(sb[144:148], "little") == 0:
        return None
    return FsIdentity("btrfs", _uuid(sb[32:48]), _label(sb[299:555]) if sb[299] else None)


# libblkid superblocks.c idinfos order (the formats pvbuild knows), RAID and crypto containers first.
_BLKID_ORDER: tuple[Callable[[Volume], FsIdentity | None], ...] = (
    _linux_raid, _lvm2, _luks, _vfat, _swap, xfs.identify, _ext, _reiserfs, _jfs, _iso9660, _minix,
    _squashfs, _btrfs,
)


def identify(vol: Volume) -> FsIdentity | None:
    """blkid-like detection: the first format (in libblkid's order) whose magic and checks match."""
    for probe in _BLKID_ORDER:
        try:
            found = probe(vol)
        except GrubError:
            found = None
        if found is not None:
            return found
    return None
