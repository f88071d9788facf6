"""ext2/ext3/ext4 as PV-GRUB reads it: GRUB 0.97 `stage2/fsys_ext2fs.c` with Xen's patches 40ext3_256byte_inode
and 60ext4 applied (PVGRUB.md §4, §5).

This is an emulation of that driver, not a general ext4 reader: every rule below is what the patched C code does,
including its bugs, because the question the emulator answers is "what will PV-GRUB do with this image", not
"what does the filesystem contain". Line numbers ("fsys_ext2fs.c:836") refer to the patched reference copy in
`reference/pv-grub-src/grub-0.97-with-xen-patches/stage2/`. The points that matter in practice:

- `mount` only checks the partition type, the volume size and the magic (fsys_ext2fs.c:417-426); the superblock is
  otherwise trusted.
- INCOMPAT_64BIT makes every lookup fail with Error 14 (the inverted "64bit itable not supported" check,
  fsys_ext2fs.c:836-841), so not even menu.lst is found.
- Group descriptors are read as one linear table after the superblock (fsys_ext2fs.c:828-835): meta_bg layouts are
  misread. Inline data (inline_data) is not understood: its bytes are taken for block numbers.
- Directories are scanned linearly (htree index blocks look like empty entries); extents are mapped with a binary
  search that does not notice holes (a hole right after an extent reads the next physical block, a later hole
  fails with Error 16, fsys_ext2fs.c:656-661).
- Symlinks: at most 5 per lookup (MAX_LINK_COUNT, fsys_ext2fs.c:342, 892), absolute from the root, relative from the
  directory holding the link (fsys_ext2fs.c:944-955); a path ends at NUL or whitespace.

Where the C code reads memory outside the buffer it filled (a corrupt directory entry crossing a block end, an
extent header claiming more entries than fit), its behaviour depends on stale memory and cannot be derived from the
image; the emulator then raises Error 16 with code "fs-corrupt" and says so. Where GRUB would loop forever or
divide by zero, the codes are "fs-hang" and "fs-crash" (number 16, no GRUB message exists for them).

Finding codes carried by `GrubError.code`:
  file-not-found (15), bad-file-type (2), symlink-loop (26), fs-64bit (14), fs-huge-file (14),
  fs-symlink-too-long (14), fs-feature-unsupported (meta_bg, inline_data, extents above 2^32, blocks > 8 KiB),
  fs-corrupt (16, or 24/18/25 from the disk layer), fs-hang, fs-crash, fs-emulator-limit (16),
  fs-silent-failure (number 0: GRUB fails without setting an error number).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from pvbuild.pvgrub.blockio import SECTOR, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.findings import Finding, error, info, warning
from pvbuild.pvgrub.fs.base import DIR_MAX_ENTRIES, DirEntry, File, Filesystem, FsIdentity, Inode

__all__ = ["Ext2File", "Ext2Filesystem", "Superblock", "identify", "mount"]

_U32 = 0xFFFFFFFF
_T = TypeVar("_T")

# --- on-disk constants (ext2_fs.h; the subset the C driver and blkid look at) ---
SUPER_OFFSET = 1024  # fsys_ext2fs.c:35 SBLOCK = 2 sectors
SUPER_SIZE = 1024  # sizeof(struct ext2_super_block), fsys_ext2fs.c:56-143
EXT2_MAGIC = 0xEF53  # fsys_ext2fs.c:339
ROOT_INO = 2  # fsys_ext2fs.c:340
PATH_MAX = 1024  # fsys_ext2fs.c:341: linkbuf size
MAX_LINK_COUNT = 5  # fsys_ext2fs.c:342
NDIR_BLOCKS = 12  # fsys_ext2fs.c:49
EXT_MAGIC = 0xF30A  # fsys_ext2fs.c:310
INODE_COPY = 156  # sizeof(struct ext2_inode) in the patched driver (fsys_ext2fs.c:167-241), copied at :882
FSYS_BUFLEN = 0x8000  # shared.h:91

S_IFMT = 0o170000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFDIR = 0o040000

COMPAT_HAS_JOURNAL = 0x0004
COMPAT_SPARSE_SUPER2 = 0x0200
INCOMPAT_RECOVER = 0x0004
INCOMPAT_JOURNAL_DEV = 0x0008
INCOMPAT_META_BG = 0x0010
INCOMPAT_EXTENTS = 0x0040
INCOMPAT_64BIT = 0x0080
INCOMPAT_INLINE_DATA = 0x8000
RO_COMPAT_SPARSE_SUPER = 0x0001
RO_COMPAT_METADATA_CSUM = 0x0400

EXTENTS_FL = 0x00080000  # fsys_ext2fs.c:251
HUGE_FILE_FL = 0x00040000  # fsys_ext2fs.c:252
INLINE_DATA_FL = 0x10000000  # ext2_fs.h EXT4_INLINE_DATA_FL (unknown to GRUB)

_WHITESPACE = b" \t\r\n"  # char_io.c:977-991 grub_isspace; isspace is redefined to it in shared.h:369

# Feature names as e2fsprogs' lib/e2p prints them (checked against dumpe2fs 1.47 bit by bit).
_COMPAT_NAMES = {
    0: "dir_prealloc", 1: "imagic_inodes", 2: "has_journal", 3: "ext_attr", 4: "resize_inode", 5: "dir_index",
    6: "lazy_bg", 8: "snapshot_bitmap", 9: "sparse_super2", 10: "fast_commit", 11: "stable_inodes",
    12: "orphan_file",
}
_INCOMPAT_NAMES = {
    0: "compression", 1: "filetype", 2: "needs_recovery", 3: "journal_dev", 4: "meta_bg", 6: "extent",
    7: "64bit", 8: "mmp", 9: "flex_bg", 10: "ea_inode", 12: "dirdata", 13: "metadata_csum_seed", 14: "large_dir",
    15: "inline_data", 16: "encrypt", 17: "casefold",
}
_RO_COMPAT_NAMES = {
    0: "sparse_super", 1: "large_file", 3: "huge_file", 4: "uninit_bg", 5: "dir_nlink", 6: "extra_isize",
    8: "quota", 9: "bigalloc", 10: "metadata_csum", 11: "replica", 12: "read-only", 13: "project",
    14: "shared_blocks", 15: "verity", 16: "orphan_present",
}

# libblkid superblocks/ext.c: what ext2 and ext3 "understand"; anything else makes the filesystem ext4.
_EXT2_RO_SUPP = 0x0001 | 0x0002 | 0x0004
_EXT2_INCOMPAT_SUPP = 0x0002 | INCOMPAT_META_BG
_EXT3_RO_SUPP = _EXT2_RO_SUPP
_EXT3_INCOMPAT_SUPP = 0x0002 | INCOMPAT_RECOVER | INCOMPAT_META_BG

# Emulator bounds (GRUB has none: these only stop pathological images from running the emulator for hours).
_MAX_DIRENT_STEPS = 1 << 18
_MAX_EXTENT_LEVELS = 64
_MAX_EXTENT_NODES = 1 << 16  # extent tree blocks one listing of a file's extents reads (`extent_runs`)


def _u16(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 2], "little")


def _u32(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 4], "little")


def _s32(v: int) -> int:
    """A C `int` from an unsigned 32-bit value (GRUB keeps block numbers in `int`, fsys_ext2fs.c:448, 595)."""
    v &= _U32
    return v - (1 << 32) if v & 0x80000000 else v


def _bsf(n: int) -> int:
    """GRUB's `log2(n)` is `ffz(~n)` = `bsf n` (fsys_ext2fs.c:337, 395-409): the lowest set bit, not a logarithm."""
    n &= _U32
    return (n & -n).bit_length() - 1


# --- CRC32C for the superblock checksum blkid verifies (metadata_csum) ---
def _make_crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def _crc32c_raw(crc: int, data: bytes) -> int:
    """Linux `crc32c_le` (no final inversion), as ext4's superblock checksum uses it."""
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc & _U32


@dataclass(frozen=True)
class Superblock:
    """The superblock fields GRUB (and blkid) read; offsets from fsys_ext2fs.c:56-143 and e2fsprogs ext2_fs.h."""

    raw: bytes
    inodes_count: int
    blocks_count: int
    first_data_block: int
    log_block_size: int
    blocks_per_group: int
    inodes_per_group: int
    magic: int
    state: int
    rev_level: int
    minor_rev_level: int
    inode_size: int
    feature_compat: int
    feature_incompat: int
    feature_ro_compat: int
    uuid: bytes
    volume_name: bytes
    desc_size: int
    first_meta_bg: int
    flags: int
    backup_bgs: tuple[int, int]
    checksum: int

    @classmethod
    def parse(cls, raw: bytes) -> Superblock:
        lo = _u32(raw, 0x04)
        hi = _u32(raw, 0x150)
        incompat = _u32(raw, 0x60)
        return cls(
            raw=raw,
            inodes_count=_u32(raw, 0x00),
            blocks_count=lo | (hi << 32 if incompat & INCOMPAT_64BIT else 0),
            first_data_block=_u32(raw, 0x14),
            log_block_size=_u32(raw, 0x18),
            blocks_per_group=_u32(raw, 0x20),
            inodes_per_group=_u32(raw, 0x28),
            magic=_u16(raw, 0x38),
            state=_u16(raw, 0x3A),
            minor_rev_level=_u16(raw, 0x3E),
            rev_level=_u32(raw, 0x4C),
            inode_size=_u16(raw, 0x58),
            feature_compat=_u32(raw, 0x5C),
            feature_incompat=incompat,
            feature_ro_compat=_u32(raw, 0x64),
            uuid=raw[0x68:0x78],
            volume_name=raw[0x78:0x88],
            desc_size=_u16(raw, 0xFE),
            first_meta_bg=_u32(raw, 0x104),
            flags=_u32(raw, 0x160),
            backup_bgs=(_u32(raw, 0x24C), _u32(raw, 0x250)),
            checksum=_u32(raw, 0x3FC),
        )

    def has_incompat(self, mask: int) -> bool:
        return bool(self.feature_incompat & mask)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names in dumpe2fs order (compat, incompat, ro_compat; unknown bits as FEATURE_Cn/In/Rn)."""
        names: list[str] = []
        for word, table, letter in ((self.feature_compat, _COMPAT_NAMES, "C"),
                                    (self.feature_incompat, _INCOMPAT_NAMES, "I"),
                                    (self.feature_ro_compat, _RO_COMPAT_NAMES, "R")):
            for bit in range(32):
                if word & (1 << bit):
                    names.append(table.get(bit, f"FEATURE_{letter}{bit}"))
        return tuple(names)

    def checksum_ok(self) -> bool:
        """metadata_csum superblock checksum (crc32c over the first 1020 bytes), as newer blkid checks it."""
        if not self.feature_ro_compat & RO_COMPAT_METADATA_CSUM:
            return True
        return _crc32c_raw(_U32, self.raw[:0x3FC]) == self.checksum


def _blkid_type(sb: Superblock) -> str | None:
    """blkid's ext type (util-linux libblkid/src/superblocks/ext.c probe_jbd/ext4/ext3/ext2), on a system that has
    both ext2 and ext4 drivers: journal device -> jbd; a feature ext3 lacks -> ext4; a journal -> ext3; else ext2."""
    fi, frc = sb.feature_incompat, sb.feature_ro_compat
    if fi & INCOMPAT_JOURNAL_DEV:
        return "jbd"
    if (frc & ~_EXT3_RO_SUPP & _U32) or (fi & ~_EXT3_INCOMPAT_SUPP & _U32):
        return "ext4"
    if sb.feature_compat & COMPAT_HAS_JOURNAL:
        return "ext3"
    if (frc & ~_EXT2_RO_SUPP & _U32) or (fi & ~_EXT2_INCOMPAT_SUPP & _U32):
        return None  # e.g. needs_recovery without a journal: no ext probe claims it
    return "ext2"


def _format_uuid(raw: bytes) -> str | None:
    if not any(raw):
        return None  # blkid_probe_set_uuid ignores an all-zero UUID
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _format_label(raw: bytes) -> str | None:
    name = raw.split(b"\0", 1)[0].rstrip(b" \t\r\n")  # blkid_probe_set_label trims trailing whitespace
    return name.decode("utf-8", "replace") if name else None


def _identity(sb: Superblock, fstype: str) -> FsIdentity:
    features = sb.feature_names
    if not sb.checksum_ok():
        features = (*features, "superblock_checksum_bad")
    return FsIdentity(fstype=fstype, uuid=_format_uuid(sb.uuid), label=_format_label(sb.volume_name),
                      features=features)


def _read_superblock(vol: Volume) -> Superblock | None:
    if vol.length < SUPER_OFFSET + SUPER_SIZE:
        return None
    raw = vol.read(SUPER_OFFSET, SUPER_SIZE)
    sb = Superblock.parse(raw)
    return sb if sb.magic == EXT2_MAGIC else None


def identify(vol: Volume) -> FsIdentity | None:
    """What blkid would report for this volume, ignoring the partition type (root=LABEL=/UUID= resolution).

    Follows libblkid's ext probes: magic 0xEF53 at byte 1080, the metadata_csum superblock checksum (blkid >= 2.39
    rejects a bad one), then jbd/ext4/ext3/ext2 by feature bits. Returns None when blkid would not claim it.
    """
    try:
        sb = _read_superblock(vol)
    except GrubError:
        return None
    if sb is None or not sb.checksum_ok():
        return None
    fstype = _blkid_type(sb)
    return None if fstype is None else _identity(sb, fstype)


def _slice_allows_ext2(part_type: int | None) -> bool:
    """fsys_ext2fs.c:417-421 (with patch 50fs_fulldisk): a whole disk (current_slice 0) always; a partition only
    with type 0x83 or 0xFD (pc_slice.h:114, 118) or a BSD sub-partition of fs type ext2fs/other (pc_slice.h:150)."""
    if part_type is None or part_type == 0:
        return True
    if part_type in (0x83, 0xFD):
        return True
    return any(part_type == (bsd | (fs << 8)) for bsd in (0xA5, 0xA6, 0xA9) for fs in (17, 10))


def mount(vol: Volume, *, arch: str = "x86_64") -> Ext2Filesystem | None:
    """GRUB's ext2fs_mount (fsys_ext2fs.c:412-429): None exactly when it returns 0.

    The checks, in order: the partition type (`_slice_allows_ext2`), `part_length < 4` sectors, reading the
    superblock (sectors 2-3), and `s_magic == 0xEF53`. Nothing else is validated: block size, revision and
    feature bits are trusted and only matter when a file is opened. A disk read error while reading the
    superblock propagates as GrubError: in GRUB it leaves `errnum` set, which fails every later probe too.
    """
    if not _slice_allows_ext2(vol.part_type):
        return None
    if vol.length // SECTOR < SUPER_OFFSET // SECTOR + SUPER_SIZE // SECTOR:
        return None
    sb = _read_superblock(vol)
    if sb is None:
        return None
    return Ext2Filesystem(vol, sb)


class _Undefined(Exception):
    """GRUB would read memory it did not fill from the image (or divide by zero): the outcome is not derivable."""

    def __init__(self, detail: str, code: str = "fs-corrupt") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class _Hang(Exception):
    """GRUB would loop forever."""


@dataclass
class _Inode:
    ino: int
    table_block: bytes  # the inode table block as read into INODE (fsys_ext2fs.c:848)
    offset: int  # raw_inode offset inside it (fsys_ext2fs.c:856-858)
    copy: bytes  # the 156 bytes memmoved to INODE (fsys_ext2fs.c:882); shorter if they ran past the block
    mode: int
    size: int
    blocks: int
    flags: int
    block: tuple[int, ...]
    file_acl: int
    size_high: int

    def memory(self, start: int, length: int, what: str) -> bytes:
        """Bytes of GRUB's INODE buffer: the copied inode, then (from offset 156) the rest of the inode table
        block that ext2_rdfsb wrote there (DATABLOCK1 starts at INODE+156, fsys_ext2fs.c:353-354)."""
        out = bytearray()
        for k in range(start, start + length):
            if k < INODE_COPY:
                if k >= len(self.copy):
                    raise _Undefined(f"{what} reaches past the inode table block (stale GRUB memory)")
                out.append(self.copy[k])
            elif k < len(self.table_block):
                out.append(self.table_block[k])
            else:
                raise _Undefined(f"{what} reaches past GRUB's inode buffer (stale memory)")
        return bytes(out)



class _Driver:
    """One `grub_open` worth of fsys_ext2fs.c state: errnum, the mapblock1/mapblock2 caches of DATABLOCK1/2,
    the current INODE, plus what the emulator noticed (features GRUB misread on the way)."""

    def __init__(self, fs: Ext2Filesystem) -> None:
        self.fs = fs
        self.vol = fs.vol
        self.sb = fs.sb
        self.bs = fs.block_size
        self.bits = fs.block_bits
        self.errnum = 0
        self.code: str | None = None
        self.detail = ""
        self.mapblock1 = -1
        self.mapblock2 = -1
        # Logical blocks read from the block just past an extent instead of a hole's zeros (see ext4_block_map).
        self.misread: set[int] = set()
        self.db1 = b""
        self.db2 = b""
        self.inode: _Inode | None = None
        self.taint: list[str] = []

    # -- errors --
    def fail(self, number: int, code: str, detail: str) -> None:
        self.errnum = int(number)
        self.code = code
        self.detail = detail

    def add_taint(self, why: str) -> None:
        if why not in self.taint:
            self.taint.append(why)

    def error(self) -> GrubError:
        """The GrubError for the current errnum (0 = GRUB failed without setting one)."""
        code = self.code or ("fs-silent-failure" if self.errnum == 0 else "fs-corrupt")
        detail = self.detail or "GRUB's ext2fs driver gave up without setting an error number"
        if self.taint and code not in ("fs-64bit", "fs-feature-unsupported"):
            detail = f"{'; '.join(self.taint)}; PV-GRUB then fails: {detail}"
            if code not in ("fs-hang", "fs-crash"):  # those outcomes matter more than their cause
                code = "fs-feature-unsupported"
        return GrubError(self.errnum, detail, code=code)

    # -- disk_io.c devread / rawread --
    def devread_check(self, sector: int, byte_offset: int, length: int) -> bool:
        """disk_io.c:304-339 devread + rawread's guards; sets errnum like GRUB and says whether data would be read.

        The partition bound is checked even when errnum is already set (disk_io.c:309-315); rawread then copies
        nothing while errnum is set (disk_io.c:158) and reports failure; a sector past the disk is ERR_GEOM
        (disk_io.c:180-183)."""
        sector &= _U32
        if length <= 0:
            return True
        part_length = self.vol.length // SECTOR
        last = (sector + ((byte_offset + length - 1) >> 9)) & _U32
        if last >= part_length:
            self.fail(Err.OUTSIDE_PART, "fs-corrupt",
                      f"sector {sector} is outside {self.vol.name} ({part_length} sectors)")
            return False
        if self.errnum:
            return False
        first_abs = self.vol.start // SECTOR + sector + (byte_offset >> 9)
        total = self.vol.disk.size // SECTOR
        if first_abs >= total:
            self.fail(Err.GEOM, "fs-corrupt", f"sector {first_abs} is past the end of the disk image")
            return False
        if self.vol.start + sector * SECTOR + byte_offset + length > self.vol.disk.size:
            self.fail(Err.READ, "fs-corrupt", f"read at sector {first_abs} runs past the end of the disk image")
            return False
        return True

    def rdfsb(self, fsblock: int) -> bytes | None:
        """ext2_rdfsb (fsys_ext2fs.c:432-440): block -> sector in 32-bit int arithmetic, then devread."""
        sector = (fsblock * (self.bs // SECTOR)) & _U32
        if not self.devread_check(sector, 0, self.bs):
            return None
        try:
            return self.vol.read_block(sector * SECTOR // self.bs, self.bs)
        except GrubError as e:
            self.fail(e.number, "fs-corrupt", e.detail)
            return None

    # -- block maps --
    def block_map(self, logical_block: int) -> int:
        """fsys_ext2fs.c:700-704 / 1037-1041: extents only if the superblock has INCOMPAT_EXTENTS *and* the inode
        has EXTENTS_FL; otherwise the classic block map."""
        assert self.inode is not None
        if self.sb.has_incompat(INCOMPAT_EXTENTS) and self.inode.flags & EXTENTS_FL:
            return self.ext4_block_map(logical_block)
        return self.ext2_block_map(logical_block)

    def ext2_block_map(self, lb: int) -> int:
        """ext2fs_block_map (fsys_ext2fs.c:447-547): direct, indirect, double and triple indirect blocks, with the
        mapblock1/mapblock2 caches. A failing read is Error 16; a block number >= 2^31 comes back negative."""
        ino = self.inode
        assert ino is not None
        apb = self.bs // 4
        apb_bits = _bsf(apb)
        if lb < NDIR_BLOCKS:  # :472-479
            return _s32(ino.block[lb])
        lb -= NDIR_BLOCKS
        if lb < apb:  # :483-493
            if self.mapblock1 != 1:
                data = self.rdfsb(ino.block[12])
                if data is None:
                    self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"cannot read the indirect block of inode {ino.ino}")
                    return -1
                self.db1 = data
            self.mapblock1 = 1
            return _s32(_u32(self.db1, lb * 4))
        lb -= apb
        if lb < (1 << (apb_bits * 2)):  # :497-518
            if self.mapblock1 != 2:
                data = self.rdfsb(ino.block[13])
                if data is None:
                    self.fail(Err.FSYS_CORRUPT, "fs-corrupt",
                              f"cannot read the double-indirect block of inode {ino.ino}")
                    return -1
                self.db1 = data
            self.mapblock1 = 2
            bnum = _s32(_u32(self.db1, (lb >> apb_bits) * 4))
            if bnum != self.mapblock2:
                data = self.rdfsb(bnum)
                if data is None:
                    self.fail(Err.FSYS_CORRUPT, "fs-corrupt",
                              f"cannot read an indirect block ({bnum & _U32}) of inode {ino.ino}")
                    return -1
                self.db2 = data
            self.mapblock2 = bnum
            return _s32(_u32(self.db2, (lb & (apb - 1)) * 4))
        self.mapblock2 = -1  # :520-546
        lb -= 1 << (apb_bits * 2)
        if self.mapblock1 != 3:
            data = self.rdfsb(ino.block[14])
            if data is None:
                self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"cannot read the triple-indirect block of inode {ino.ino}")
                return -1
            self.db1 = data
        self.mapblock1 = 3
        idx = lb >> (apb_bits * 2)
        if idx >= apb:
            raise _Undefined(f"logical block beyond the triple-indirect range of inode {ino.ino}")
        data = self.rdfsb(_u32(self.db1, idx * 4))
        if data is None:
            self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"cannot read an indirect block of inode {ino.ino}")
            return -1
        self.db2 = data
        data = self.rdfsb(_u32(self.db2, ((lb >> apb_bits) & (apb - 1)) * 4))
        if data is None:
            self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"cannot read an indirect block of inode {ino.ino}")
            return -1
        self.db2 = data
        return _s32(_u32(self.db2, (lb & (apb - 1)) * 4))

    @staticmethod
    def _ext_search(node: bytes, base: int, limit: int, lb: int, what: str) -> int:
        """ext4_ext_binsearch_idx / ext4_ext_binsearch (fsys_ext2fs.c:553-589): the last entry whose first logical
        block is <= lb, or entry 0 when none is (also when eh_entries is 0). Entries beyond the bytes GRUB filled
        are stale memory: not derivable."""

        def key(k: int) -> int:
            off = base + 12 + 12 * k
            if off + 4 > limit:
                raise _Undefined(f"{what}: eh_entries points past the end of the node (stale GRUB memory)")
            return _u32(node, off)

        entries = _u16(node, base + 2)
        left, right = 1, entries - 1
        target = lb & _U32  # int compared with __u32: unsigned comparison
        while left <= right:
            mid = left + (right - left) // 2
            if target < key(mid):
                right = mid - 1
            else:
                left = mid + 1
        return left - 1

    def ext4_block_map(self, lb: int) -> int:
        """ext4fs_block_map (fsys_ext2fs.c:594-663). Index levels are followed while eh_depth != 0 (depth is never
        compared with the level: a cycle hangs GRUB); leaf_hi/start_hi != 0 is Error 14; the extent found must
        satisfy `ee_block + ee_len >= lb` (note `>=`: the block just past an extent maps to the next physical
        block; a block further into a hole is Error 16)."""
        ino = self.inode
        assert ino is not None
        node = ino.copy
        base = 40  # i_block inside INODE
        limit = len(ino.copy)
        where = f"inode {ino.ino} extent root"
        if _u16(node, base) != EXT_MAGIC:  # :623-627
            self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"{where}: bad extent magic")
            return -1
        seen: set[int] = set()
        levels = 0
        while _u16(node, base + 6) != 0:  # :628
            if _u16(node, base) != EXT_MAGIC:  # :630-634
                self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"{where}: bad extent magic")
                return -1
            k = self._ext_search(node, base, limit, lb, where)
            off = base + 12 + 12 * k
            if off + 10 > limit:
                raise _Undefined(f"{where}: index entry past the end of the node (stale GRUB memory)")
            leaf_lo = _u32(node, off + 4)
            leaf_hi = _u16(node, off + 8)
            if leaf_hi:  # :636-640
                self.fail(Err.FILELENGTH, "fs-feature-unsupported",
                          f"{where}: index points above block 2^32 (ei_leaf_hi={leaf_hi}); PV-GRUB's ext4 patch "
                          "only handles 32-bit block numbers")
                return -1
            if leaf_lo in seen:
                raise _Hang(f"inode {ino.ino}: extent index block {leaf_lo} points back into its own path; "
                            "PV-GRUB follows it forever")
            seen.add(leaf_lo)
            levels += 1
            if levels > _MAX_EXTENT_LEVELS:
                raise _Undefined(f"inode {ino.ino}: more than {_MAX_EXTENT_LEVELS} extent index levels "
                                 "(real trees have at most 5); emulator gave up", code="fs-emulator-limit")
            data = self.rdfsb(leaf_lo)  # :641-645
            if data is None:
                self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"inode {ino.ino}: cannot read extent block {leaf_lo}")
                return -1
            self.db1 = data
            node, base, limit = data, 0, self.bs
            where = f"inode {ino.ino} extent block {leaf_lo}"
        k = self._ext_search(node, base, limit, lb, where)  # :650
        off = base + 12 + 12 * k
        if off + 12 > limit:
            raise _Undefined(f"{where}: extent entry past the end of the node (stale GRUB memory)")
        ee_block = _u32(node, off)
        ee_len = _u16(node, off + 4)
        start_hi = _u16(node, off + 6)
        start_lo = _u32(node, off + 8)
        if start_hi:  # :651-655
            self.fail(Err.FILELENGTH, "fs-feature-unsupported",
                      f"{where}: extent starts above block 2^32 (ee_start_hi={start_hi}); PV-GRUB's ext4 patch "
                      "only handles 32-bit block numbers")
            return -1
        if ((ee_block + ee_len) & _U32) < (lb & _U32):  # :656-660
            self.fail(Err.FSYS_CORRUPT, "file-sparse",
                      f"inode {ino.ino}: logical block {lb} is in a hole after extent "
                      f"[{ee_block}, {ee_block + ee_len}) (PV-GRUB cannot read sparse extent files)")
            return -1
        if ((ee_block + ee_len) & _U32) == (lb & _U32):
            self.misread.add(lb)
        return _s32(start_lo + lb - ee_block)  # :661

    # -- ext2fs_read --
    def read(self, filepos: int, length: int) -> bytes:
        """ext2fs_read (fsys_ext2fs.c:666-737) for [filepos, filepos+length): mapped block 0 reads as zeros, a
        negative map stops the loop, and any errnum turns the whole read into a failure (:733-734). A failing
        data read does not stop the loop (later block-map reads then fail too, as in GRUB)."""
        out = bytearray(length)
        segments: list[tuple[int, int, int]] = []  # (byte offset in volume, length, position in out)
        pos = 0
        bs = self.bs
        short = False
        while length > 0:
            lb = filepos >> self.bits
            offset = filepos & (bs - 1)
            mapped = self.block_map(lb)
            if mapped < 0:
                short = True
                break
            size = min(bs - offset, length)
            if mapped != 0:
                sector = (mapped * (bs // SECTOR)) & _U32
                if self.devread_check(sector, offset, size):
                    start = sector * SECTOR + offset
                    if segments and segments[-1][0] + segments[-1][1] == start \
                            and segments[-1][2] + segments[-1][1] == pos and segments[-1][1] < (16 << 20):
                        s0, l0, p0 = segments[-1]
                        segments[-1] = (s0, l0 + size, p0)
                    else:
                        segments.append((start, size, pos))
            pos += size
            length -= size
            filepos += size
        if self.errnum:
            raise self.error()
        for start, size, at in segments:
            try:
                out[at:at + size] = self.vol.read(start, size)
            except GrubError as e:
                self.fail(e.number, "fs-corrupt", e.detail)
                raise self.error() from e
        if short:
            # A block number >= 2^31 (C int) ends the loop without an error number: grub_read returns short.
            self.fail(Err.NONE, "fs-silent-failure",
                      f"a block of inode {self.inode.ino if self.inode else 0} maps to a negative block number; "
                      "GRUB's read stops early without an error")
            raise self.error()
        return bytes(out)

    # -- ext2fs_dir --
    def load_inode(self, ino: int) -> bool:
        """fsys_ext2fs.c:820-882: group, descriptor block (read linearly after the superblock), the inverted 64bit
        check, the inode table block, the raw inode (any s_inode_size, patch 40). False = GRUB returns 0."""
        sb = self.sb
        bs = self.bs
        ipg = sb.inodes_per_group
        if ipg == 0:
            raise _Undefined("s_inodes_per_group is 0: PV-GRUB divides by zero", code="fs-crash")
        isz = sb.inode_size
        if isz == 0:
            raise _Undefined("s_inode_size is 0: PV-GRUB divides by zero", code="fs-crash")
        ipb = bs // isz
        if ipb == 0:
            raise _Undefined(f"s_inode_size {isz} is larger than the block size {bs}: GRUB's bsf(0) is undefined")
        desc_size = sb.desc_size if sb.has_incompat(INCOMPAT_64BIT) else 32  # EXT2_DESC_SIZE, :375-377
        if desc_size == 0:
            raise _Undefined("64bit with s_desc_size 0: PV-GRUB divides by zero", code="fs-crash")
        dpb = bs // desc_size
        if dpb == 0:
            raise _Undefined(f"s_desc_size {desc_size} is larger than the block size: GRUB's bsf(0) is undefined")
        idx = (ino - 1) & _U32
        group_id = _s32(idx // ipg)  # :820
        group_desc = group_id >> _bsf(dpb)  # :821
        desc = group_id & (dpb - 1)  # :822
        gdt_block = (1 + group_desc + sb.first_data_block) & _U32  # :828-829 WHICH_SUPER + group_desc + first
        self._check_meta_bg(group_id, group_desc, dpb, gdt_block)
        gdt = self.rdfsb(gdt_block)
        if gdt is None:
            self.detail = f"cannot read the group descriptor block {gdt_block} for inode {ino}: {self.detail}"
            return False
        gd_off = desc * desc_size  # :834-835
        need = 44 if sb.has_incompat(INCOMPAT_64BIT) else 12
        if gd_off + need > bs:
            raise _Undefined(f"group descriptor {desc} lies past the descriptor block (stale GRUB memory)")
        if sb.has_incompat(INCOMPAT_64BIT) and _u32(gdt, gd_off + 0x28) == 0:  # :836-841
            self.fail(Err.FILELENGTH, "fs-64bit",
                      "ext4 feature 64bit: PV-GRUB's ext4 patch inverts its check ('64bit itable not supported') "
                      "and fails every lookup with Error 14, menu.lst included; create the filesystem with "
                      "mkfs.ext4 -O ^64bit (or convert it with resize2fs -s)")
            raise self.error()
        itable = _u32(gdt, gd_off + 8)
        ino_blk = (itable + ((idx % ipg) >> _bsf(ipb))) & _U32  # :842-844
        table = self.rdfsb(ino_blk)  # :848-851
        if table is None:
            self.detail = f"cannot read inode table block {ino_blk} for inode {ino}: {self.detail}"
            return False
        self.mapblock1 = self.mapblock2 = -1  # :854
        raw_off = (idx & (ipb - 1)) * isz  # :856-858
        copy = table[raw_off:raw_off + INODE_COPY]  # :882
        if len(copy) < 112:
            raise _Undefined(f"inode {ino} runs past its inode table block (stale GRUB memory)")
        flags = _u32(copy, 32)
        self.inode = _Inode(
            ino=ino, table_block=table, offset=raw_off, copy=copy,
            mode=_u16(copy, 0), size=_u32(copy, 4), blocks=_u32(copy, 28), flags=flags,
            block=struct.unpack_from("<15I", copy, 40), file_acl=_u32(copy, 104), size_high=_u32(copy, 108))
        if flags & INLINE_DATA_FL:
            self.add_taint(f"inode {ino} uses inline_data, which PV-GRUB does not understand (it takes the "
                           "inline bytes for block numbers)")
        return True

    def _check_meta_bg(self, group_id: int, group_desc: int, dpb: int, grub_block: int) -> None:
        """meta_bg moves descriptor blocks past s_first_meta_bg into their meta group; GRUB still reads them at
        first_data_block + 1 + n (fsys_ext2fs.c:828-829). Note it when that is a different block."""
        sb = self.sb
        if not sb.has_incompat(INCOMPAT_META_BG) or group_desc < sb.first_meta_bg or group_id < 0:
            return
        if sb.blocks_per_group == 0 or group_id >= self.fs.group_count:
            return
        first = group_desc * dpb
        true_block = sb.first_data_block + first * sb.blocks_per_group + (1 if self.fs.bg_has_super(first) else 0)
        if true_block != grub_block:
            self.add_taint(f"meta_bg: the descriptor of block group {group_id} is in block {true_block}, but "
                           f"PV-GRUB reads block {grub_block}")

    def dir(self, path: bytes) -> _Inode:
        """ext2fs_dir (fsys_ext2fs.c:778-1097), the whole lookup loop. Returns the regular file's inode."""
        current = ROOT_INO  # :781
        updir = current  # :782
        link_count = 0
        name = path.split(b"\0", 1)[0]
        pos = 0
        steps = 0
        while True:
            if not self.load_inode(current):
                raise self.error()
            inode = self.inode
            assert inode is not None
            if inode.mode & S_IFMT == S_IFLNK:  # :889-959
                link_count += 1
                if link_count > MAX_LINK_COUNT:  # :892-896
                    self.fail(Err.SYMLINK_LOOP, "symlink-loop",
                              f"more than {MAX_LINK_COUNT} symbolic links while resolving {_show(path)} "
                              f"(at inode {inode.ino})")
                    raise self.error()
                end = pos
                while end < len(name) and name[end] not in _WHITESPACE:  # :899-901
                    end += 1
                rest = name[pos:end]
                if inode.size + len(rest) > PATH_MAX - 2:  # :904-909
                    self.fail(Err.FILELENGTH, "fs-symlink-too-long",
                              f"symlink inode {inode.ino} ({inode.size} bytes) plus the rest of the path exceeds "
                              f"GRUB's {PATH_MAX - 2}-byte link buffer")
                    raise self.error()
                target = self._link_target(inode)
                name = (target + rest).split(b"\0", 1)[0]  # :911-917, :944
                pos = 0
                if name[:1] == b"/":  # :945-950
                    current = ROOT_INO
                    updir = current
                else:  # :951-955
                    current = updir
                continue
            if pos >= len(name) or name[pos] in _WHITESPACE:  # :962
                if inode.mode & S_IFMT != S_IFREG:  # :964-968
                    self.fail(Err.BAD_FILETYPE, "bad-file-type",
                              f"{_show(path)} is not a regular file (inode {inode.ino}, mode {inode.mode:o})")
                    raise self.error()
                if inode.flags & HUGE_FILE_FL and not inode.size_high:  # :970-975
                    self.fail(Err.FILELENGTH, "fs-huge-file",
                              f"inode {inode.ino} has EXT4_HUGE_FILE_FL with i_size_high 0; PV-GRUB refuses it")
                    raise self.error()
                return inode
            updir = current  # :982
            while pos < len(name) and name[pos] == 0x2F:  # :985-986
                pos += 1
            if inode.size == 0 or inode.mode & S_IFMT != S_IFDIR:  # :989-993
                self.fail(Err.BAD_FILETYPE, "bad-file-type",
                          f"{_show(name[:pos])} is not a directory (inode {inode.ino}, mode {inode.mode:o}) "
                          f"while resolving {_show(path)}")
                raise self.error()
            end = pos
            while end < len(name) and name[end] not in _WHITESPACE and name[end] != 0x2F:  # :996-997
                end += 1
            found, steps = self._search(inode, name[pos:end], steps, path)
            current = found  # :1093
            pos = end  # :1094

    def _link_target(self, inode: _Inode) -> bytes:
        """The symlink text (fsys_ext2fs.c:919-938): a fast symlink (i_blocks == EA block, ext2_is_fast_symlink
        :763-769) is copied straight from i_block -- past i_block if i_size > 60; a slow one is read with
        ext2fs_read (extents or block map)."""
        ea_blocks = self.bs // SECTOR if inode.file_acl else 0
        if inode.blocks != ea_blocks:
            if inode.size == 0:
                self.fail(Err.NONE, "fs-silent-failure",
                          f"slow symlink inode {inode.ino} has size 0; GRUB's lookup fails without an error number")
                raise self.error()
            data = self.read(0, inode.size)  # :926-929 (raises on errnum)
            return data
        return inode.memory(40, inode.size, f"fast symlink inode {inode.ino}")

    def _search(self, inode: _Inode, component: bytes, steps: int, path: bytes) -> tuple[int, int]:
        """The directory scan (fsys_ext2fs.c:1002-1091): entries are read one after another up to i_size,
        advancing by rec_len, comparing names as C strings (substring, char_io.c:1189). Linear: htree index
        blocks read as entries with inode 0."""
        bs = self.bs
        loc = 0
        last_blk = -1
        data = b""
        while True:
            if loc >= inode.size:  # :1013-1027
                self.fail(Err.FILE_NOT_FOUND, "file-not-found",
                          f"{_show(component)} not found in directory inode {inode.ino} while resolving "
                          f"{_show(path)}")
                raise self.error()
            if loc > 0x7FFFFFFF:
                raise _Undefined(f"directory inode {inode.ino}: position {loc} overflows GRUB's int")
            steps += 1
            if steps > _MAX_DIRENT_STEPS:
                raise _Undefined(f"more than {_MAX_DIRENT_STEPS} directory entries scanned; emulator gave up",
                                 code="fs-emulator-limit")
            blk = loc >> self.bits  # :1031
            if blk != last_blk:
                mapped = self.block_map(blk)  # :1037-1041
                self.mapblock2 = -1  # :1045
                if mapped < 0:  # :1046-1050
                    if not self.errnum:
                        self.fail(Err.NONE, "fs-silent-failure",
                                  f"directory inode {inode.ino} block {blk} maps to a negative block number; GRUB's "
                                  "lookup fails without an error number")
                    raise self.error()
                read = self.rdfsb(mapped)  # :1051-1056
                if read is None:
                    self.fail(Err.FSYS_CORRUPT, "fs-corrupt",
                              f"cannot read block {mapped} of directory inode {inode.ino}")
                    raise self.error()
                data = read
                self.db2 = data
                last_blk = blk
            off = loc & (bs - 1)  # :1057
            if off + 6 > bs:
                raise _Undefined(f"directory inode {inode.ino}: entry at {loc} crosses the block end "
                                 "(stale GRUB memory)")
            d_ino = _u32(data, off)
            rec_len = _u16(data, off + 4)
            loc += rec_len  # :1060
            if d_ino:  # :1070-1088
                name_len = data[off + 6] if off + 7 <= bs else None
                if name_len is None:
                    raise _Undefined(f"directory inode {inode.ino}: entry at {loc - rec_len} crosses the block end")
                if self._name_matches(component, data, off + 8, name_len, inode.ino):
                    return d_ino, steps  # :1091, :1093
            if rec_len == 0:
                raise _Hang(f"directory inode {inode.ino}: entry at {loc} has rec_len 0 and does not match "
                            f"{_show(component)}; PV-GRUB rereads it forever")

    def list_dir(self, inode: _Inode, limit: int) -> list[DirEntry]:
        """Every entry of a directory, scanned as `_search` scans it (the loop GRUB runs with print_possibilities
        set, fsys_ext2fs.c:1002-1091): linear up to i_size by rec_len, names cut at name_len or a NUL."""
        bs = self.bs
        loc = 0
        last_blk = -1
        data = b""
        out: list[DirEntry] = []
        steps = 0
        while loc < inode.size:
            steps += 1
            if len(out) >= limit or steps > _MAX_DIRENT_STEPS:
                raise _Undefined(f"directory inode {inode.ino} has more than {min(limit, _MAX_DIRENT_STEPS)} "
                                 "entries; the listing stops there", code="fs-emulator-limit")
            blk = loc >> self.bits
            if blk != last_blk:
                mapped = self.block_map(blk)
                if mapped < 0:
                    if not self.errnum:
                        self.fail(Err.NONE, "fs-silent-failure",
                                  f"directory inode {inode.ino} block {blk} maps to a negative block number")
                    raise self.error()
                read = self.rdfsb(mapped)
                if read is None:
                    self.fail(Err.FSYS_CORRUPT, "fs-corrupt",
                              f"cannot read block {mapped} of directory inode {inode.ino}")
                    raise self.error()
                data = read
                last_blk = blk
            off = loc & (bs - 1)
            if off + 8 > bs:
                raise _Undefined(f"directory inode {inode.ino}: entry at {loc} crosses the block end")
            d_ino = _u32(data, off)
            rec_len = _u16(data, off + 4)
            name_len = data[off + 6]
            if rec_len == 0:
                raise _Hang(f"directory inode {inode.ino}: entry at {loc} has rec_len 0")
            if d_ino:
                if off + 8 + name_len > bs:
                    raise _Undefined(f"directory inode {inode.ino}: a name at {loc} runs past the block end")
                name = data[off + 8:off + 8 + name_len].split(b"\0", 1)[0]
                if name not in (b".", b".."):
                    out.append(DirEntry(name, d_ino))
            loc += rec_len
        return out

    def extent_runs(self, inode: _Inode, limit: int) -> list[tuple[int, int, int, bool]]:
        """All (logical block, length, physical block, unwritten) leaves of an extent tree, as Linux maps them:
        unlike GRUB's binary search (`ext4_block_map`), this sees holes and unwritten extents. Bounded by
        `limit` leaves and _MAX_EXTENT_LEVELS levels."""
        out: list[tuple[int, int, int, bool]] = []
        stack: list[tuple[bytes, int, int]] = [(inode.copy[40:100], 0, 0)]
        visits = 0
        while stack:
            node, level, expect_depth = stack.pop()
            visits += 1
            if _u16(node, 0) != EXT_MAGIC:
                self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"inode {inode.ino}: bad extent magic")
                raise self.error()
            entries, depth = _u16(node, 2), _u16(node, 6)
            if (level and depth != expect_depth) or level > _MAX_EXTENT_LEVELS or 12 + 12 * entries > len(node):
                self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"inode {inode.ino}: inconsistent extent tree")
                raise self.error()
            if visits > _MAX_EXTENT_NODES or len(out) + entries > limit:
                raise _Undefined(f"inode {inode.ino}: more than {limit} extents", code="fs-emulator-limit")
            children = []
            for k in range(entries):
                off = 12 + 12 * k
                if depth:
                    leaf = _u32(node, off + 4) | _u16(node, off + 8) << 32
                    block = self.rdfsb(leaf) if leaf < 1 << 32 else None
                    if block is None:
                        self.fail(Err.FSYS_CORRUPT, "fs-corrupt", f"inode {inode.ino}: cannot read extent block "
                                                                  f"{leaf}")
                        raise self.error()
                    children.append((block, level + 1, depth - 1))
                else:
                    length = _u16(node, off + 4)
                    unwritten = length > 32768
                    physical = _u32(node, off + 8) | _u16(node, off + 6) << 32
                    out.append((_u32(node, off), length - 32768 if unwritten else length, physical, unwritten))
            stack.extend(reversed(children))
        return out

    def _name_matches(self, component: bytes, data: bytes, start: int, name_len: int, dir_ino: int) -> bool:
        """substring(dirname, name) == 0 (char_io.c:1189-1205) on the entry's name, NUL-terminated at name_len
        (fsys_ext2fs.c:1072-1075): an embedded NUL ends the name early."""
        for j in range(len(component) + 1):
            want = component[j] if j < len(component) else 0
            if j == name_len:
                have = 0
            elif start + j >= self.bs:
                raise _Undefined(f"directory inode {dir_ino}: a name runs past the block end (stale GRUB memory)")
            else:
                have = data[start + j]
            if want != have:
                return False
            if want == 0:
                return True
        return False  # not reached: the loop ends at the terminator


def _show(path: bytes) -> str:
    return repr(path.decode("latin-1"))


def _encode_path(path: str | bytes) -> bytes:
    if isinstance(path, bytes):
        return path
    try:
        return path.encode("latin-1")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape")


class Ext2File(File):
    """An open ext2/3/4 file: `size` is GRUB's filemax (i_size as a C int, fsys_ext2fs.c:977); reads go through
    the same block-map emulation as the lookup. `unsupported` names features GRUB misread on the way (meta_bg,
    inline_data): the bytes returned are then what PV-GRUB would read, not the file's real content."""

    def __init__(self, driver: _Driver, inode: _Inode, path: bytes) -> None:
        self._driver = driver
        self._inode = inode
        self.path = path
        self.ino = inode.ino
        # filemax is an int: i_size >= 2^31 is negative and grub_read then returns nothing (disk_io.c:1661-1666).
        self.size = inode.size if inode.size < 0x80000000 else 0
        self.unsupported: tuple[str, ...] = tuple(driver.taint)
        # Blocks of a hole that PV-GRUB reads from the next physical block instead of as zeros: the bytes it
        # loads differ from the file's content there.
        self.misread_blocks: tuple[int, ...] = ()

    def read(self, offset: int, length: int) -> bytes:
        """grub_read (disk_io.c:1658-1677) clipping to filemax, then ext2fs_read."""
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        length = min(length, self.size - offset)
        drv = self._driver
        drv.errnum = 0
        drv.code = None
        drv.detail = ""
        drv.inode = self._inode
        try:
            data = drv.read(offset, length)
            self.misread_blocks = tuple(sorted(set(self.misread_blocks) | drv.misread))
            drv.misread = set()
            return data
        except _Undefined as e:
            drv.fail(Err.FSYS_CORRUPT, e.code, e.detail)
            raise drv.error() from None
        except _Hang as e:
            drv.fail(Err.FSYS_CORRUPT, "fs-hang", str(e))
            raise drv.error() from None


class Ext2Filesystem(Filesystem):
    """A volume GRUB's ext2fs driver mounted (see `mount`)."""

    grub_name = "ext2fs"

    def __init__(self, vol: Volume, sb: Superblock) -> None:
        self.vol = vol
        self.sb = sb
        fstype = _blkid_type(sb) or "ext2"
        self.identity = _identity(sb, fstype)

    @property
    def block_bits(self) -> int:
        """EXT2_BLOCK_SIZE_BITS (fsys_ext2fs.c:366)."""
        return self.sb.log_block_size + 10

    @property
    def block_size(self) -> int:
        return 1 << min(self.block_bits, 40)

    @property
    def group_count(self) -> int:
        sb = self.sb
        if sb.blocks_per_group == 0 or sb.blocks_count <= sb.first_data_block:
            return 0
        return -(-(sb.blocks_count - sb.first_data_block) // sb.blocks_per_group)

    def bg_has_super(self, group: int) -> bool:
        """e2fsprogs ext2fs_bg_has_super: where superblock backups (and meta_bg descriptor blocks) sit."""
        sb = self.sb
        if group == 0:
            return True
        if sb.feature_compat & COMPAT_SPARSE_SUPER2:
            return group in sb.backup_bgs
        if group <= 1 or not sb.feature_ro_compat & RO_COMPAT_SPARSE_SUPER:
            return True
        if not group & 1:
            return False
        for base in (3, 5, 7):
            n = base
            while n < group:
                n *= base
            if n == group:
                return True
        return False

    def _buffer_overrun(self) -> str | None:
        """GRUB keeps superblock, one descriptor block, INODE (a whole block is read there) and DATABLOCK1/2 in
        its 32 KiB FSYS_BUF (fsys_ext2fs.c:346-356, shared.h:91): blocks above 8 KiB overrun it."""
        if self.sb.log_block_size > 3:
            size = self.block_size
            return (f"block size {size}: GRUB's ext2 buffers (1024 + 3 x block + 156 bytes) overrun its "
                    f"{FSYS_BUFLEN}-byte FSYS_BUF; PV-GRUB's behaviour is undefined")
        return None

    def findings(self) -> list[Finding]:
        """What the superblock alone says about PV-GRUB (PVGRUB.md §5)."""
        sb = self.sb
        out: list[Finding] = []
        if sb.has_incompat(INCOMPAT_64BIT):
            out.append(error("fs-64bit", f"{self.vol.name}: ext4 feature 64bit is set; PV-GRUB fails every file "
                                         "lookup on it with Error 14 (inverted check in Xen's ext4 patch). Use "
                                         "mkfs.ext4 -O ^64bit."))
        overrun = self._buffer_overrun()
        if overrun:
            out.append(error("fs-feature-unsupported", f"{self.vol.name}: {overrun}"))
        if sb.has_incompat(INCOMPAT_META_BG):
            dpb = self.block_size // ((sb.desc_size if sb.has_incompat(INCOMPAT_64BIT) else 32) or 1) or 1
            if self.group_count > max(sb.first_meta_bg, 1) * dpb:
                out.append(warning("fs-feature-unsupported",
                                   f"{self.vol.name}: meta_bg with {self.group_count} block groups; PV-GRUB reads "
                                   "group descriptors linearly and misreads inodes in groups past "
                                   f"{max(sb.first_meta_bg, 1) * dpb - 1}"))
        if sb.has_incompat(INCOMPAT_INLINE_DATA):
            out.append(warning("fs-feature-unsupported", f"{self.vol.name}: inline_data; PV-GRUB cannot read "
                                                         "files or directories stored inline"))
        if sb.has_incompat(INCOMPAT_RECOVER):
            out.append(warning("fs-needs-recovery", f"{self.vol.name}: the journal needs recovery; PV-GRUB ignores "
                                                    "the journal and may see stale files"))
        if sb.blocks_count * self.block_size > (1 << 41):
            out.append(info("fs-beyond-2tib", f"{self.vol.name}: PV-GRUB addresses only the first 2 TiB (32-bit "
                                              "sectors); files stored beyond are misread"))
        return out

    # --- inode-level access for directory walks (`pvbuild diff`) ---
    @property
    def root_ino(self) -> int:
        return ROOT_INO

    def _inode(self, ino: int) -> tuple[_Driver, _Inode]:
        drv = _Driver(self)
        overrun = self._buffer_overrun()
        if overrun:
            raise GrubError(Err.FSYS_CORRUPT, overrun, code="fs-feature-unsupported")
        if not 1 <= ino <= self.sb.inodes_count:
            raise GrubError(Err.FSYS_CORRUPT, f"inode number {ino} is outside 1..{self.sb.inodes_count}",
                            code="fs-corrupt")
        try:
            if not drv.load_inode(ino):
                raise drv.error()
        except _Undefined as e:
            drv.fail(Err.FSYS_CORRUPT, e.code, e.detail)
            raise drv.error() from None
        assert drv.inode is not None
        return drv, drv.inode

    @staticmethod
    def _guarded(drv: _Driver, what: Callable[[], _T]) -> _T:
        try:
            return what()
        except _Undefined as e:
            drv.fail(Err.FSYS_CORRUPT, e.code, e.detail)
            raise drv.error() from None
        except _Hang as e:
            drv.fail(Err.FSYS_CORRUPT, "fs-hang", str(e))
            raise drv.error() from None

    def stat(self, ino: int) -> Inode:
        _, inode = self._inode(ino)
        c = inode.copy
        size = inode.size | (inode.size_high << 32 if inode.mode & S_IFMT == S_IFREG else 0)
        return Inode(ino=ino, mode=inode.mode, size=size, uid=_u16(c, 2) | _u16(c, 120) << 16,
                     gid=_u16(c, 24) | _u16(c, 122) << 16, mtime=_u32(c, 16), nlink=_u16(c, 26))

    def listdir(self, ino: int) -> list[DirEntry]:
        drv, inode = self._inode(ino)
        if inode.mode & S_IFMT != S_IFDIR:
            raise GrubError(Err.BAD_FILETYPE, f"inode {ino} is not a directory (mode {inode.mode:o})",
                            code="bad-file-type")
        return self._guarded(drv, lambda: drv.list_dir(inode, DIR_MAX_ENTRIES))

    def readlink(self, ino: int) -> bytes:
        drv, inode = self._inode(ino)
        if inode.mode & S_IFMT != S_IFLNK:
            raise GrubError(Err.BAD_FILETYPE, f"inode {ino} is not a symlink (mode {inode.mode:o})",
                            code="bad-file-type")
        if inode.size > PATH_MAX * 4:
            raise GrubError(Err.FILELENGTH, f"symlink inode {ino} claims {inode.size} bytes", code="fs-corrupt")
        return self._guarded(drv, lambda: drv._link_target(inode))

    def content(self, ino: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        drv, inode = self._inode(ino)
        if inode.mode & S_IFMT != S_IFREG:
            raise GrubError(Err.BAD_FILETYPE, f"inode {ino} is not a regular file (mode {inode.mode:o})",
                            code="bad-file-type")
        if inode.flags & INLINE_DATA_FL:
            raise GrubError(Err.FSYS_CORRUPT, f"inode {ino} keeps its data inline (inline_data), which this reader "
                                              "(like PV-GRUB) does not read", code="fs-feature-unsupported")
        size = inode.size | inode.size_high << 32
        bs = self.block_size
        if not (self.sb.has_incompat(INCOMPAT_EXTENTS) and inode.flags & EXTENTS_FL):
            # The classic block map reads holes (block 0) as zeros, as Linux does: GRUB's own read is right.
            for pos in range(0, size, chunk):
                drv.inode = inode
                yield self._guarded(drv, partial(drv.read, pos, min(chunk, size - pos)))
            return
        runs = sorted(self._guarded(drv, lambda: drv.extent_runs(inode, 1 << 20)))
        pos = 0
        for lblk, length, pblk, unwritten in runs:
            start, end = min(lblk * bs, size), min((lblk + length) * bs, size)
            if start < pos:
                raise GrubError(Err.FSYS_CORRUPT, f"inode {ino}: overlapping extents", code="fs-corrupt")
            while pos < start:  # a hole
                n = min(chunk, start - pos)
                yield bytes(n)
                pos += n
            while pos < end:
                n = min(chunk, end - pos)
                yield bytes(n) if unwritten else self.vol.read(pblk * bs + (pos - lblk * bs), n)
                pos += n
        while pos < size:
            n = min(chunk, size - pos)
            yield bytes(n)
            pos += n

    def open(self, path: str | bytes) -> Ext2File:
        """Resolve `path` as ext2fs_dir does (fsys_ext2fs.c:778-1097), then do the first read grub_open does.

        - The path ends at NUL or whitespace; runs of '/' are skipped; a trailing '/' searches for an empty name
          (Error 15); an intermediate non-directory or a final non-regular file is Error 2.
        - Symlinks: at most 5 per lookup, counted over the whole lookup (6th -> Error 26); absolute targets
          restart at the root, relative ones at the directory holding the link; the rest of the path is appended
          (target + rest > 1022 bytes -> Error 14).
        - INCOMPAT_64BIT: Error 14 at the first inode lookup (code fs-64bit).
        - grub_open then calls gunzip_test_header (disk_io.c:1647, gunzip.c:280), which reads the first 10 bytes:
          a read error there fails the open, so `open` reads them too.
        """
        raw = _encode_path(path)
        drv = _Driver(self)
        overrun = self._buffer_overrun()
        if overrun:
            raise GrubError(Err.FSYS_CORRUPT, overrun, code="fs-feature-unsupported")
        try:
            inode = drv.dir(raw)
        except _Undefined as e:
            drv.fail(Err.FSYS_CORRUPT, e.code, e.detail)
            raise drv.error() from None
        except _Hang as e:
            drv.fail(Err.FSYS_CORRUPT, "fs-hang", str(e))
            raise drv.error() from None
        f = Ext2File(drv, inode, raw)
        f.read(0, min(10, f.size))
        return f
