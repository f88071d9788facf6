"""PV-GRUB's XFS driver, GRUB 0.97 `stage2/fsys_xfs.c`, re-implemented to fail where it fails.

This is an emulator, not an XFS reader: it walks the on-disk structures with the same arithmetic, the same
buffers and the same mistakes as the C driver (line numbers below refer to fsys_xfs.c of the reference tree),
so that "PV-GRUB would find /boot/grub/menu.lst here" can be trusted. What it models:

- `xfs_mount` (l.455): the superblock must say "XFSB" and version 4 (`sb_versionnum & 0xF == 4`): a V5
  filesystem (crc=1, the mkfs.xfs default since xfsprogs 3.2.3) does not mount and GRUB reports Error 17.
  The MBR partition type is not looked at. Nothing else of the superblock is checked.
- `xfs_dir` (l.537): path walk from the root inode; symlinks followed at most MAX_LINK_COUNT = 8 times for
  the whole walk (9th: Error 26), targets of bsize-1 bytes or more Error 14, absolute targets from the
  filesystem root, relative ones from the directory holding the link. The symlink target and the rest of
  the path share one buffer (`linkbuf`, l.543) and the rest is appended from a pointer into that same
  buffer (l.568): a second symlink whose target is longer than the path already consumed overwrites the
  rest of the path before it is copied, and the copy then repeats the target until the buffer is full.
  That is GRUB's behaviour and this emulator's.
- Directories as `first_dentry`/`next_dentry` (l.333-452) read them: shortform (the ".." entry gets an
  empty name, l.361: `usual[0]+1`, so ".." is never found in a shortform directory; "." has inode 0 and
  keeps the current directory), block (XD2B, entry count from the block tail), leaf and node (leftmost
  leaf found by following `btree[0].before`, then the leaves' `forw` chain; live entries counted as
  count - stale). Data entries are read in directory order through `xfs_read`; a 16-byte entry header is
  assumed, so V4 filesystems with the ftype feature (a file-type byte after the name, not known to
  GRUB's xfs.h) are misparsed: shortform entries yield wrong inode numbers and every entry after the
  first is read one byte off; in block/leaf/node directories only a name whose length is 5 mod 8 is
  sized wrong (l.399), and every entry after it is misread.
- `xfs_read` (l.487): extents from the inode (extent format) or from the bmap btree (descend along the
  first pointer, then follow right siblings; a NULL right sibling is *not* zero after `fsb2daddr`, l.244,
  so running past the last leaf reads garbage); the unwritten-extent flag is ignored; a hole is
  zero-filled only in the odd way of l.520-528 (the extent after a hole is skipped within the same call).
  `btroot_maxrecs` (l.193) subtracts the inode core size from the attribute fork offset, so a btree
  inode that also has an attribute fork has its first btree pointer read from the wrong place; with a fork
  offset below 13 the i386 build (32-bit size_t) loads it ~2 GiB away, for any inode (l.218): a fault.
  Each xfs_read call rewalks the extent list from the start, as GRUB does (results of the same call pattern
  are exact; callers wanting GRUB's bytes for sparse files read in mini-os load_file's chunks).
- `devread` (disk_io.c:304): sector numbers are 32-bit, reads outside the partition set Error 24 and,
  once any error is set, every later read does nothing and leaves its buffer as it was (rawread's
  `while (... && !errnum)`; grub_memmove copies nothing either): the walk then goes on with stale buffers,
  as GRUB's does, and GRUB reports whatever error is left at the end.
- GRUB's buffers are modelled byte for byte: FSYS_BUF (directory buffer at 0, extent record at 4096, inode at
  8192) starts as the zero-filled static grub_scratch_mem (mini-os.c:736) plus what the mount functions tried
  before xfs_mount read into it (probe.fsys_buf_after_probe); reads beyond an inode come from there. What
  cannot be known (uninitialised stack variables: the symlink buffer, the btree block header; memory past
  FSYS_BUF) gives Error 16 with code `xfs-undefined`. Loops GRUB would never leave are detected (a state
  repeats) or cut at `step_limit` units of work: code `xfs-hang`. Each open()/read() starts from that
  initial FSYS_BUF (GRUB keeps the previous walk's buffers when it does not remount; that only matters on
  filesystems corrupt enough to make it read stale buffers).

Errors: 15 file not found, 2 not a regular file / not a directory, 26 too many symlinks, 14 symlink too long,
24 read outside the partition, 16 (our verdict, codes `xfs-undefined`, `xfs-hang`, `xfs-geometry`) where GRUB
would act on garbage, crash or hang.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pvbuild.pvgrub.blockio import MAX_READ, SECTOR, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.findings import Finding, error, info
from pvbuild.pvgrub.fs.base import DIR_MAX_ENTRIES, DirEntry, File, Filesystem, FsIdentity, Inode
from pvbuild.pvgrub.fs.grubmem import grub_path, grub_read_window

# --- constants (xfs.h and fsys_xfs.c of GRUB 0.97) ------------------------------------------------------
XFS_SB_MAGIC = 0x58465342  # "XFSB"
XFS_SB_VERSION_4 = 4
XFS_SB_VERSION_NUMBITS = 0x000F
XFS_SB_VERSION_MOREBITSBIT = 0x8000
XFS_SB_VERSION2_FTYPE = 0x00000200
XFS_SB_VERSION2_CRCBIT = 0x00000100
MAX_LINK_COUNT = 8  # fsys_xfs.c:27

SB_SIZE = 200  # sizeof(xfs_sb_t) as GRUB's xfs.h declares it (ends with sb_dirblklog + 7 pad bytes)
DI_U = 100  # offsetof(xfs_dinode_t, di_u): 96-byte core + di_next_unlinked
BMDR_HDR = 4  # sizeof(xfs_bmdr_block_t)
BTREE_BLOCK = 24  # sizeof(xfs_btree_block_t) == sizeof(xfs_btree_lblock_t)
BMBT_REC = 16  # sizeof(xfs_bmbt_rec_t)
DATA_HDR = 16  # sizeof(xfs_dir2_data_hdr_t)
BLOCK_TAIL = 8  # sizeof(xfs_dir2_block_tail_t)
SF_HDR = 10  # sizeof(xfs_dir2_sf_hdr_t)
DA_BLOCK_HEAD = 100  # xfs_dabread reads the first 100 bytes of a directory block

FMT_LOCAL, FMT_EXTENTS, FMT_BTREE = 1, 2, 3
IFMT, IFDIR, IFREG, IFLNK = 0o170000, 0o040000, 0o100000, 0o120000
XFS_DIR2_BLOCK_MAGIC = 0x58443242  # "XD2B"
XFS_DIR2_LEAF1_MAGIC = 0xD2F1
XFS_DIR2_LEAFN_MAGIC = 0xD2FF
XFS_DIR2_DATA_FREE_TAG = 0xFFFF

# GRUB's scratch buffer (shared.h FSYS_BUFLEN) and where fsys_xfs.c puts its three buffers in it (l.63-65).
FSYS_BUFLEN = 0x8000
DIRBUF, FILEBUF, INODEBUF = 0, 4096, 8192

# Default bound on the work of one open/read, in GRUB steps (extent records walked, directory entries and
# btree levels read). Valid filesystems need far less; see XfsFilesystem.step_limit.
STEP_LIMIT = 500_000

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF

V5_ADVICE = ("PV-GRUB's xfs driver reads only v4; make /boot with mkfs.xfs -m crc=0 -n ftype=0 "
             "or use ext4 without 64bit")


def _i32(v: int) -> int:
    """C int conversion (two's complement wrap)."""
    v &= M32
    return v - (1 << 32) if v & 0x80000000 else v


def _i64(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v & (1 << 63) else v


def _be16(b: bytes, o: int = 0) -> int:
    return int.from_bytes(b[o:o + 2], "big")


def _be32(b: bytes, o: int = 0) -> int:
    return int.from_bytes(b[o:o + 4], "big")


def _be64(b: bytes, o: int = 0) -> int:
    return int.from_bytes(b[o:o + 8], "big")


def _isspace(c: int) -> bool:
    """char_io.c grub_isspace."""
    return c in (0x20, 0x09, 0x0D, 0x0A)


def format_uuid(raw: bytes) -> str:
    """blkid's DCE form: 8-4-4-4-12 lower-case hex."""
    h = raw.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# --- superblock ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Superblock:
    """The fields of an XFS superblock the emulator and the identity probe use (all big-endian on disk)."""

    magic: int
    blocksize: int
    dblocks: int
    uuid: bytes
    rootino: int
    rextsize: int
    agblocks: int
    agcount: int
    versionnum: int
    sectsize: int
    inodesize: int
    fname: bytes
    blocklog: int
    sectlog: int
    inodelog: int
    inopblog: int
    agblklog: int
    imax_pct: int
    dirblklog: int
    features2: int
    features_ro_compat: int
    features_incompat: int

    @property
    def version(self) -> int:
        return self.versionnum & XFS_SB_VERSION_NUMBITS

    @property
    def has_ftype(self) -> bool:
        if self.version == 5:
            return bool(self.features_incompat & 0x1)
        return bool(self.versionnum & XFS_SB_VERSION_MOREBITSBIT and self.features2 & XFS_SB_VERSION2_FTYPE)

    @property
    def label(self) -> str | None:
        raw = self.fname.split(b"\0", 1)[0].rstrip(b" \t\r\n")
        return raw.decode("utf-8", "replace") if raw else None

    @property
    def uuid_str(self) -> str | None:
        return None if not any(self.uuid) else format_uuid(self.uuid)

    @property
    def features(self) -> tuple[str, ...]:
        out = [f"v{self.version}"]
        if self.version == 5:
            out.append("crc")
        if self.has_ftype:
            out.append("ftype")
        if self.version == 5:
            for bit, name in ((1, "finobt"), (2, "rmapbt"), (4, "reflink"), (8, "inobtcount")):
                if self.features_ro_compat & bit:
                    out.append(name)
            for bit, name in ((2, "sparse"), (4, "meta_uuid"), (8, "bigtime"), (16, "needsrepair"),
                              (32, "nrext64")):
                if self.features_incompat & bit:
                    out.append(name)
        return tuple(out)


def parse_superblock(raw: bytes) -> Superblock:
    """Decode the first 256 bytes of an XFS superblock (missing bytes read as zero)."""
    raw = raw.ljust(256, b"\0")
    return Superblock(
        magic=_be32(raw, 0), blocksize=_be32(raw, 4), dblocks=_be64(raw, 8), uuid=bytes(raw[32:48]),
        rootino=_be64(raw, 56), rextsize=_be32(raw, 80), agblocks=_be32(raw, 84), agcount=_be32(raw, 88),
        versionnum=_be16(raw, 100), sectsize=_be16(raw, 102), inodesize=_be16(raw, 104),
        fname=bytes(raw[108:120]), blocklog=raw[120], sectlog=raw[121], inodelog=raw[122], inopblog=raw[123],
        agblklog=raw[124], imax_pct=raw[127], dirblklog=raw[192], features2=_be32(raw, 200),
        features_ro_compat=_be32(raw, 212), features_incompat=_be32(raw, 216),
    )


def _grub_superblock(vol: Volume) -> bytes | None:
    """xfs_mount's `devread (0, 0, sizeof(super), &super)`: None when GRUB's read fails."""
    if vol.length // SECTOR < 1:  # devread's partition check: sector 0 must lie inside
        return None
    try:
        return vol.read(0, SB_SIZE)
    except GrubError:
        return None


_CRC32C_TABLE: list[int] = []


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), as XFS v5 and btrfs superblocks use it."""
    if not _CRC32C_TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC32C_TABLE.append(c)
    crc ^= M32
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ M32


def _blkid_valid(sb: Superblock, vol: Volume) -> bool:
    """libblkid superblocks/xfs.c xfs_verify_sb: the sanity checks blkid applies before saying "xfs"."""
    if (sb.agcount <= 0 or not 512 <= sb.sectsize <= 32768 or not 9 <= sb.sectlog <= 15
            or sb.sectsize != 1 << sb.sectlog or not 512 <= sb.blocksize <= 65536
            or not 9 <= sb.blocklog <= 16 or sb.blocksize != 1 << sb.blocklog
            or not 256 <= sb.inodesize <= 2048 or not 8 <= sb.inodelog <= 11
            or sb.inodesize != 1 << sb.inodelog or sb.blocklog - sb.inodelog != sb.inopblog
            or sb.rextsize * sb.blocksize > 1024 ** 3 or sb.rextsize * sb.blocksize < 4096
            or sb.imax_pct > 100 or sb.dblocks == 0
            or sb.dblocks > sb.agcount * sb.agblocks
            or sb.dblocks < (sb.agcount - 1) * sb.agblocks + 64):
        return False
    if sb.version == 5:
        if not sb.versionnum & XFS_SB_VERSION_MOREBITSBIT or not sb.features2 & XFS_SB_VERSION2_CRCBIT:
            return False
        try:
            sector = vol.read(0, sb.sectsize)
        except GrubError:
            return False
        crc = crc32c(sector[:224] + b"\0\0\0\0" + sector[228:])
        if crc != int.from_bytes(sector[224:228], "little"):
            return False
    return True


def identify(vol: Volume) -> FsIdentity | None:
    """What blkid says about an XFS volume (v4 or v5): fstype "xfs", UUID, LABEL; None if not XFS."""
    try:
        raw = vol.read(0, 256) if vol.length >= 256 else None
    except GrubError:
        return None
    if raw is None or _be32(raw) != XFS_SB_MAGIC:
        return None
    sb = parse_superblock(raw)
    if not _blkid_valid(sb, vol):
        return None
    return FsIdentity("xfs", sb.uuid_str, sb.label, sb.features)


def refusal_reason(vol: Volume) -> str | None:
    """Why GRUB's xfs_mount refuses an XFS volume, or None (it mounts, or it is not XFS at all)."""
    raw = _grub_superblock(vol)
    if raw is None or _be32(raw) != XFS_SB_MAGIC:
        return None
    version = _be16(raw, 100) & XFS_SB_VERSION_NUMBITS
    if version == XFS_SB_VERSION_4:
        return None
    if version == 5:
        return f"XFS v5 (crc=1) superblock: {V5_ADVICE}"
    return f"XFS superblock version {version}: {V5_ADVICE}"


def mount(vol: Volume, *, arch: str = "x86_64") -> XfsFilesystem | None:
    """GRUB's xfs_mount (fsys_xfs.c:455): a filesystem exactly when the C function returns 1.

    `arch` is the PV-GRUB build ("x86_64" or "i386"): size_t arithmetic in btroot_maxrecs differs.
    """
    raw = _grub_superblock(vol)
    if (raw is None or _be32(raw) != XFS_SB_MAGIC
            or (_be16(raw, 100) & XFS_SB_VERSION_NUMBITS) != XFS_SB_VERSION_4):
        return None
    try:  # the whole first sector for the identity (features2 lies past GRUB's 200-byte xfs_sb_t)
        full = vol.read(0, min(512, vol.length))
    except GrubError:
        full = raw
    return XfsFilesystem(vol, parse_superblock(full), arch=arch)


# --- the emulation ----------------------------------------------------------------------------------------
class _Undefined(Exception):
    """GRUB would use memory nothing wrote, or write outside its buffers."""


class _Hang(Exception):
    """GRUB would not come back (or not within any sensible time)."""


class _Mem:
    """A buffer of GRUB's (FSYS_BUF, linkbuf): contents plus which bytes were ever written."""

    __slots__ = ("all_known", "data", "known", "name", "size")

    def __init__(self, size: int, name: str, initial: bytes | None = None) -> None:
        self.size = size
        self.name = name
        self.data = bytearray(size) if initial is None else bytearray(initial[:size].ljust(size, b"\0"))
        self.all_known = initial is not None  # a buffer with defined initial contents (FSYS_BUF)
        self.known = bytearray(0 if self.all_known else size)

    def write(self, off: int, b: bytes) -> None:
        n = len(b)
        if n == 0:
            return
        if off < 0 or off + n > self.size:
            raise _Undefined(f"GRUB would write {n} bytes at offset {off} of its {self.size}-byte {self.name}")
        self.data[off:off + n] = b
        if not self.all_known:
            self.known[off:off + n] = b"\x01" * n

    def read(self, off: int, n: int) -> bytes:
        if n <= 0:
            return b""
        if off < 0 or off + n > self.size:
            raise _Undefined(f"GRUB would read {n} bytes at offset {off} of its {self.size}-byte {self.name}")
        if not self.all_known and self.known.find(0, off, off + n) != -1:
            raise _Undefined(f"GRUB would use bytes of its {self.name} that were never filled")
        return bytes(self.data[off:off + n])

    def byte(self, off: int) -> int:
        return self.read(off, 1)[0]


class _Sink:
    """Where an xfs_read call writes: GRUB's buffer at some offset, or a caller's buffer."""

    def __init__(self, mem: _Mem | None, base: int = 0, limit: int = 0) -> None:
        self.mem = mem
        self.base = base
        self.out = bytearray() if mem is None else None
        self.limit = limit  # caller's buffer size (out mode)
        self.overflow = 0

    def write(self, pos: int, b: bytes) -> None:
        if self.mem is not None:
            self.mem.write(self.base + pos, b)
            return
        assert self.out is not None
        if pos < 0:
            raise _Undefined("GRUB would write before the start of the caller's buffer")
        end = pos + len(b)
        if end > self.limit:
            self.overflow = max(self.overflow, end - self.limit)
            b = b[:max(0, self.limit - pos)]
            end = pos + len(b)
        if not b:
            return
        if len(self.out) < pos:
            self.out.extend(b"\0" * (pos - len(self.out)))  # bytes GRUB left untouched (see XfsFile.read)
        self.out[pos:end] = b


class _Run:
    """One GRUB operation on a mounted XFS: the C globals (struct xfs_info, filepos, filemax, errnum) and
    buffers, with the C functions as methods (same names)."""

    def __init__(self, fs: XfsFilesystem) -> None:
        self.fs = fs
        self.mem = _Mem(FSYS_BUFLEN, "FSYS_BUF scratch buffer", fs.scratch())
        self.errnum = 0
        self.errdetail = ""
        self.steps = 0
        # struct xfs_info's per-walk fields
        self.nextents = 0
        self.next = 0
        self.next_raw = 0  # the right sibling as stored, before fsb2daddr
        self.daddr = 0
        self.forw = 0
        self.dablk = 0
        self.xt = -1  # offset in self.mem of the current extent record, -1 = never set
        self.i8param = 0
        self.dirpos = 0
        self.dirmax = 0
        self.blkoff = 0
        self.fpos = 0
        self.sfe = -1
        self.filepos = 0
        self.filemax = 0

    # --- bookkeeping ---
    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.fs.step_limit:
            raise _Hang(f"more than {self.fs.step_limit} steps of GRUB's xfs driver without an answer")

    def set_err(self, number: int, detail: str) -> None:
        self.errnum = number
        self.errdetail = detail

    # --- disk_io.c devread/rawread ---
    def devread(self, sector: int, byte_offset: int, byte_len: int) -> bytes | None:
        """disk_io.c devread: the bytes, or None when GRUB's read fails or is skipped (errnum already set)."""
        sector &= M32
        byte_offset = _i32(byte_offset)
        byte_len = _i32(byte_len)
        last = (sector + (_i32(byte_offset + byte_len - 1) >> 9)) & M32
        if last >= self.fs.part_sectors:
            self.set_err(Err.OUTSIDE_PART, f"read of {byte_len} bytes at sector {sector} + {byte_offset} "
                                           f"outside {self.fs.vol.name} ({self.fs.part_sectors} sectors)")
            return None
        sector = (sector + (byte_offset >> 9)) & M32
        byte_offset &= SECTOR - 1
        if byte_len <= 0:
            return b""
        if self.errnum:
            return None
        if ((self.fs.part_start + sector) & M32) >= self.fs.disk_sectors:
            self.set_err(Err.GEOM, f"sector {sector} of {self.fs.vol.name} is past the end of the disk")
            return None
        try:
            return self.fs.read_bytes(sector * SECTOR + byte_offset, byte_len)
        except GrubError as e:
            self.set_err(e.number, e.detail)
            return None

    # --- inode buffer helpers ---
    def fmt(self) -> int:
        f = self.mem.data[INODEBUF + 5]  # FSYS_BUF always has defined contents
        return f - 256 if f >= 128 else f  # xfs_int8_t di_format

    def mode(self) -> int:
        return _be16(self.mem.read(INODEBUF + 2, 2))

    def di_size(self) -> int:
        return _i64(_be64(self.mem.read(INODEBUF + 56, 8)))

    # --- address arithmetic (l.68-99, 176-187) ---
    def fsb2daddr(self, fsbno: int) -> int:
        fs = self.fs
        agno = (fsbno >> fs.agblklog) & M32
        agbno = fsbno & ((1 << fs.agblklog) - 1)
        return self.agb2daddr(agno, agbno)

    def agb2daddr(self, agno: int, agbno: int) -> int:
        return ((agno * self.fs.agblocks + agbno) << self.fs.bdlog) & M64

    # --- di_read (l.201) ---
    def di_read(self, ino: int) -> None:
        fs = self.fs
        k = fs.agblklog + fs.inopblog
        agno = (ino >> k) & M32
        agino = ino & (((1 << k) - 1) & M32)
        agbno = agino >> fs.inopblog
        offset = ino & ((1 << fs.inopblog) - 1)
        data = self.devread(self.agb2daddr(agno, agbno), offset * fs.isize, fs.isize)
        if data is not None:
            self.mem.write(INODEBUF, data)
        # xfs.ptr0 (l.218) is loaded here in C, whatever the format, from the buffer as it now is. Its value
        # only matters for btree-format inodes and only depends on this buffer, so ptr0() computes it when it
        # is used; the load itself can fault: on i386, btroot_maxrecs of a fork offset below 13 is ~2^28.
        off = self.ptr0_offset()
        if not 0 <= off <= FSYS_BUFLEN - 8:
            raise _Undefined(f"di_read loads the btree root pointer (fsys_xfs.c:218) {off - INODEBUF} bytes from "
                             f"the inode buffer, far outside GRUB's buffers (di_forkoff "
                             f"{self.mem.data[INODEBUF + 82]}, {self.fs.arch} size_t): PV-GRUB crashes")

    def ptr0_offset(self) -> int:
        """Where l.218 reads xfs.ptr0: btroot_maxrecs (l.193), computed in the build's size_t."""
        forkoff = self.mem.data[INODEBUF + 82]
        tmp = forkoff << 3 if forkoff else self.fs.isize
        bits = 64 if self.fs.arch == "x86_64" else 32
        maxrecs = _i32(((tmp - BMDR_HDR - DI_U) % (1 << bits)) // 16)
        return INODEBUF + DI_U + BMDR_HDR + maxrecs * 8

    def ptr0(self) -> int:
        """l.218: the first pointer of the inode's bmap btree root, as GRUB finds it."""
        return _be64(self.mem.read(self.ptr0_offset(), 8))

    # --- extents (l.225-287) ---
    def init_extents(self) -> None:
        f = self.fmt()
        if f == FMT_EXTENTS:
            self.xt = INODEBUF + DI_U
            self.nextents = _be32(self.mem.read(INODEBUF + 76, 4))
        elif f == FMT_BTREE:
            ptr0 = self.ptr0()
            h: bytes | None = None
            seen: set[int] = set()
            while True:
                self.step()
                self.daddr = self.fsb2daddr(ptr0)
                got = self.devread(self.daddr, 0, BTREE_BLOCK)
                if got is not None:
                    h = got
                elif h is None:
                    raise _Undefined("the bmap btree block header GRUB reads into a stack variable could not "
                                     "be read: GRUB would go on with whatever that stack held")
                if _be16(h, 4) == 0:
                    self.nextents = _be16(h, 6)
                    self.next_raw = _be64(h, 16)
                    self.next = self.fsb2daddr(self.next_raw)
                    self.fpos = BTREE_BLOCK
                    return
                p = self.devread(self.daddr, self.fs.btnode_ptr0_off, 8)
                if p is None and got is None:
                    raise _Hang("GRUB's bmap btree descent (fsys_xfs.c:238) repeats the same failed read forever")
                if p is not None:
                    ptr0 = _be64(p)
                if got is not None and p is not None:
                    if ptr0 in seen:
                        raise _Hang("the bmap btree's first pointers form a cycle: GRUB's descent "
                                    "(fsys_xfs.c:238) never ends")
                    seen.add(ptr0)
        # any other format: GRUB initialises nothing and goes on with the previous walk's state

    def next_extent(self) -> tuple[int, int, int] | None:
        f = self.fmt()
        if f == FMT_EXTENTS:
            if self.nextents == 0:
                return None
        elif f == FMT_BTREE:
            if self.nextents == 0:
                if self.next == 0:
                    return None
                self.daddr = self.next
                h = self.devread(self.daddr, 0, BTREE_BLOCK)
                if h is None:
                    raise _Undefined("a bmap btree leaf header GRUB reads into a stack variable could not be "
                                     "read: GRUB would go on with whatever that stack held")
                self.nextents = _be16(h, 6)
                self.next_raw = _be64(h, 16)
                self.next = self.fsb2daddr(self.next_raw)
                self.fpos = BTREE_BLOCK
            if self.errnum == 0:
                # Fast path: the same record read again (GRUB rereads the extent list on every xfs_read call)
                key = (self.daddr, self.fpos)
                hit = self.fs.rec_cache.get(key)
                if hit is not None:
                    self.mem.data[FILEBUF:FILEBUF + BMBT_REC] = hit[0]
                    self.xt = FILEBUF + BMBT_REC
                    self.fpos = _i32(self.fpos + BMBT_REC)
                    self.nextents = (self.nextents - 1) & M32
                    self.step()
                    return hit[1]
            rec = self.devread(self.daddr, self.fpos, BMBT_REC)
            if rec is not None:
                self.mem.write(FILEBUF, rec)
            self.xt = FILEBUF
            self.fpos = _i32(self.fpos + BMBT_REC)
        elif self.xt < 0:
            raise _Undefined(f"inode format {f} is neither extents nor btree: GRUB would walk an extent "
                             f"pointer nothing set")
        else:
            raise _Undefined(f"inode format {f} is neither extents nor btree: GRUB would walk the stale "
                             f"extent list of an earlier inode without an end")
        self.step()
        raw = self.mem.read(self.xt, BMBT_REC)
        l0, l1, l2, l3 = struct.unpack(">IIII", raw)
        xad = ((l0 & 0x7FFFFFFF) << 23) | (l1 >> 9), ((l1 & 0x1FF) << 43) | (l2 << 11) | (l3 >> 21), l3 & 0x1FFFFF
        if f == FMT_BTREE and self.errnum == 0:
            cache = self.fs.rec_cache
            if len(cache) > 1 << 20:
                cache.clear()
            cache[(self.daddr, _i32(self.fpos - BMBT_REC))] = (raw, xad)
        self.xt += BMBT_REC
        self.nextents = (self.nextents - 1) & M32
        return xad

    # --- xfs_dabread (l.292) ---
    def dabread(self) -> None:
        self.init_extents()
        while True:
            xad = self.next_extent()
            if xad is None:
                return
            offset, start, length = xad
            if offset <= self.dablk < offset + length:
                data = self.devread(self.fsb2daddr((start + self.dablk - offset) & M64), 0, DA_BLOCK_HEAD)
                if data is not None:
                    self.mem.write(DIRBUF, data)
                return

    # --- xfs_read (l.487) ---
    def xfs_read(self, sink: _Sink, length: int) -> int:
        if self.fmt() == FMT_LOCAL:
            if length < 0:
                raise _Undefined("GRUB would memmove a negative length")
            if self.errnum == 0:  # grub_memmove copies only while errnum is clear (char_io.c memcheck)
                sink.write(0, self.mem.read(INODEBUF + DI_U + self.filepos, length))
            self.filepos = _i32(self.filepos + length)
            return length
        fs = self.fs
        startpos = self.filepos
        endpos = _i32(self.filepos + length)
        endofprev = M64
        pos = 0
        self.init_extents()
        seen: set[tuple[int, int, int, int, int]] = set()
        while length > 0:
            xad = self.next_extent()
            if xad is None:
                break
            offset, start, xlen = xad
            if self.errnum and self.fmt() == FMT_BTREE:
                # Every read now fails and the same stale record comes back: if the state repeats, it is forever.
                state = (offset, start, xlen, self.filepos, endofprev)
                if state in seen:
                    raise _Hang("after a failed read GRUB's xfs_read walks the same stale extent record "
                                "over and over (up to 2^32 times)")
                seen.add(state)
            if offset <= ((self.filepos >> fs.blklog) & M64) < offset + xlen:
                endofcur = ((offset + xlen) << fs.blklog) & M64
                toread = length if endofcur >= (endpos & M64) else _i32(endofcur - self.filepos)
                if toread <= 0:
                    raise _Undefined(f"GRUB's xfs_read computes a read of {toread} bytes")
                done = 0
                while done < toread:  # one devread in C; split here only to bound single reads
                    n = min(toread - done, MAX_READ)
                    data = self.devread(self.fsb2daddr(start),
                                        _i32(self.filepos + done - (offset << fs.blklog)), n)
                    if data is not None:
                        sink.write(pos + done, data)
                    done += n
                pos += toread
                length -= toread
                self.filepos = _i32(self.filepos + toread)
            elif offset > endofprev:
                if ((offset << fs.blklog) & M64) >= (endpos & M64):
                    toread = length
                else:
                    toread = _i32(((offset - endofprev) << fs.blklog) & M64)
                if toread < 0 or toread > MAX_READ:
                    raise _Undefined(f"GRUB would zero-fill {toread} bytes for a hole")
                length -= toread
                self.filepos = _i32(self.filepos + toread)
                sink.write(pos, b"\0" * toread)
                pos += toread
                continue
            endofprev = (offset + xlen) & M64
        return _i32(self.filepos - startpos)

    # --- directory walk (l.309-452) ---
    def sf_ino(self, sfe: int, namelen: int) -> int:
        p = INODEBUF + sfe + namelen + 3
        return _be64(self.mem.read(p, 8)) if self.i8param == 0 else _be32(self.mem.read(p, 4))

    def sf_parent_ino(self) -> int:
        p = INODEBUF + DI_U + 2
        return _be64(self.mem.read(p, 8)) if self.i8param == 0 else _be32(self.mem.read(p, 4))

    def first_dentry(self) -> tuple[bytes | None, int]:
        self.forw = 0
        f = self.fmt()
        if f == FMT_LOCAL:
            self.dirmax = self.mem.byte(INODEBUF + DI_U)
            self.i8param = 0 if self.mem.byte(INODEBUF + DI_U + 1) else 4
            self.dirpos = -2
        elif f in (FMT_EXTENTS, FMT_BTREE):
            self.filepos = 0
            self.xfs_read(_Sink(self.mem, DIRBUF), DATA_HDR)
            if _be32(self.mem.read(DIRBUF, 4)) == XFS_DIR2_BLOCK_MAGIC:
                self.filepos = self.fs.dirbsize - BLOCK_TAIL
                self.xfs_read(_Sink(self.mem, DIRBUF), BLOCK_TAIL)
                tail = self.mem.read(DIRBUF, BLOCK_TAIL)
                self.dirmax = _i32(_be32(tail, 0) - _be32(tail, 4))
            else:
                self.dablk = ((1 << 35) >> self.fs.blklog) & M32
                seen: set[tuple[int, bytes]] = set()
                while True:
                    self.step()
                    self.dabread()
                    head = self.mem.read(DIRBUF, 24)
                    magic = _be16(head, 8)
                    if magic in (XFS_DIR2_LEAFN_MAGIC, XFS_DIR2_LEAF1_MAGIC):
                        self.dirmax = _be16(head, 12) - _be16(head, 14)
                        self.forw = _be32(head, 0)
                        break
                    state = (self.dablk, head)
                    if state in seen:
                        raise _Hang("GRUB's search for the first directory leaf (fsys_xfs.c:434) loops "
                                    "through the same node blocks forever")
                    seen.add(state)
                    self.dablk = _be32(head, 20)
            self.blkoff = DATA_HDR
            self.filepos = self.blkoff
            self.dirpos = 0
        else:
            raise _Undefined(f"directory inode in format {f}: GRUB's first_dentry sets up nothing and "
                             f"next_dentry returns leftovers")
        return self.next_dentry()

    def next_dentry(self) -> tuple[bytes | None, int]:
        """(name as a C string, inode number); name None at the end of the directory."""
        self.step()
        if self.dirpos >= self.dirmax:
            if self.forw == 0:
                return None, 0
            self.dablk = self.forw
            self.dabread()
            head = self.mem.read(DIRBUF, 16)
            self.dirmax = _be16(head, 12) - _be16(head, 14)
            self.forw = _be32(head, 0)
            self.dirpos = 0
        f = self.fmt()
        ino = 0
        if f == FMT_LOCAL:
            if self.dirpos == -2:
                name = b"."
            elif self.dirpos == -1:
                ino = self.sf_parent_ino()
                name = b""  # l.361: `++name` makes it point at the NUL after "." -- not at ".."
                self.sfe = DI_U + SF_HDR - self.i8param
            else:
                namelen = self.mem.byte(INODEBUF + self.sfe)
                ino = self.sf_ino(self.sfe, namelen)
                raw = self.mem.read(INODEBUF + self.sfe + 3, namelen)
                self.mem.write(INODEBUF + self.sfe + 3 + namelen, b"\0")  # name[namelen] = 0 (l.405)
                name = raw.split(b"\0", 1)[0]
                self.sfe += namelen + 11 - self.i8param
        elif f in (FMT_EXTENTS, FMT_BTREE):
            dirbsize = self.fs.dirbsize
            seen: set[tuple[int, int, int, bytes]] = set()
            while True:
                self.step()
                if self.blkoff >= dirbsize:
                    self.blkoff = DATA_HDR
                    self.filepos = _i32((self.filepos & ~(dirbsize - 1)) | self.blkoff)
                state = (self.filepos, self.blkoff, self.errnum, bytes(self.mem.data[DIRBUF:DIRBUF + 4]))
                if state in seen:
                    raise _Hang("GRUB's skip over free directory space (fsys_xfs.c:379) makes no progress")
                seen.add(state)
                self.xfs_read(_Sink(self.mem, DIRBUF), 4)
                self.blkoff = _i32(self.blkoff + 4)
                head = self.mem.read(DIRBUF, 4)
                if head[:2] == b"\xff\xff":
                    toread = ((_be16(head, 2) + 7) & ~7) - 4
                    self.blkoff = _i32(self.blkoff + toread)
                    self.filepos = _i32(self.filepos + toread)
                    continue
                break
            self.xfs_read(_Sink(self.mem, DIRBUF + 4), 5)
            entry = self.mem.read(DIRBUF, 9)
            ino = _be64(entry, 0)
            namelen = entry[8]
            toread = ((namelen + 11 + 7) & ~7) - 9
            self.xfs_read(_Sink(self.mem, DIRBUF), toread)
            raw = self.mem.read(DIRBUF, namelen)
            self.mem.write(DIRBUF + namelen, b"\0")
            name = raw.split(b"\0", 1)[0]
            self.blkoff = _i32(self.blkoff + toread + 5)
        else:
            raise _Undefined(f"directory inode in format {f}: GRUB's next_dentry returns leftovers")
        self.dirpos += 1
        return name, ino

    # --- xfs_dir (l.537) ---
    def xfs_dir(self, path: bytes) -> bool:
        fs = self.fs
        pathbuf = bytearray(path + b"\0")
        linkbuf = _Mem(fs.bsize, "symlink buffer (linkbuf)")
        # dirname: (buffer, index); the buffer is either the caller's path or linkbuf
        cur: bytearray | _Mem = pathbuf
        pos = 0

        def at(buf: bytearray | _Mem, i: int) -> int:
            if isinstance(buf, _Mem):
                return buf.byte(i)
            if i >= len(buf):
                raise _Undefined("GRUB would read past the end of the file name")
            return buf[i]

        def put(buf: bytearray | _Mem, i: int, c: int) -> None:
            if isinstance(buf, _Mem):
                buf.write(i, bytes((c,)))
            else:
                buf[i] = c

        parent_ino = ino = fs.rootino
        link_count = 0
        while True:
            self.step()
            self.di_read(ino)
            di_size = self.di_size()
            di_mode = self.mode()
            if di_mode & IFMT == IFLNK:
                link_count += 1
                if link_count > MAX_LINK_COUNT:
                    self.set_err(Err.SYMLINK_LOOP, f"more than {MAX_LINK_COUNT} symbolic links")
                    return False
                if di_size < fs.bsize - 1:
                    self.filepos = 0
                    self.filemax = _i32(di_size)
                    sink = _Sink(linkbuf, 0)
                    n = self.xfs_read(sink, self.filemax)
                else:
                    self.set_err(Err.FILELENGTH, f"symbolic link target of {di_size} bytes (GRUB's limit is "
                                                 f"{fs.bsize - 2})")
                    return False
                ino = fs.rootino if linkbuf.byte(0) == ord("/") else parent_ino
                # while (n < bsize - 1 && (linkbuf[n++] = *dirname++)); -- dirname may point into linkbuf
                while n < fs.bsize - 1:
                    c = at(cur, pos)
                    pos += 1
                    linkbuf.write(n, bytes((c,)))
                    n += 1
                    if c == 0:
                        break
                linkbuf.write(n, b"\0")
                cur, pos = linkbuf, 0
                continue

            c0 = at(cur, pos)
            if c0 == 0 or _isspace(c0):
                if di_mode & IFMT != IFREG:
                    self.set_err(Err.BAD_FILETYPE, "not a regular file")
                    return False
                self.filepos = 0
                self.filemax = _i32(di_size)
                return True
            if di_mode & IFMT != IFDIR:
                self.set_err(Err.BAD_FILETYPE, "a path component is not a directory")
                return False
            while at(cur, pos) == ord("/"):
                pos += 1
            rest = pos
            while True:
                ch = at(cur, rest)
                if ch == 0 or _isspace(ch) or ch == ord("/"):
                    break
                rest += 1
            put(cur, rest, 0)
            comp = bytearray()
            i = pos
            while (c := at(cur, i)) != 0:
                comp.append(c)
                i += 1
            want = bytes(comp)
            name, new_ino = self.first_dentry()
            while True:
                # cmp = (!*dirname) ? -1 : substring (dirname, name) (l.596): 0 only for an exact match
                if want:
                    if name is None:
                        raise _Undefined("GRUB counts no entries in this directory: first_dentry returns NULL "
                                         "and xfs_dir compares the name with a NULL pointer")
                    if want == name:
                        parent_ino = ino
                        if new_ino:
                            ino = new_ino
                        pos = rest
                        put(cur, rest, ch)
                        break
                name, new_ino = self.next_dentry()
                if name is None:
                    self.set_err(Err.FILE_NOT_FOUND, f"{want.decode('utf-8', 'replace')!r} not found")
                    put(cur, rest, ch)
                    return False


# --- the filesystem --------------------------------------------------------------------------------------
class XfsFile(File):
    """A file found by xfs_dir: its inode as GRUB holds it, read through GRUB's xfs_read."""

    def __init__(self, fs: XfsFilesystem, path: str, inode: bytes, size: int) -> None:
        self.fs = fs
        self.path = path
        self._inode = inode
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        """One `grub_read` (disk_io.c:1663) -> `xfs_read` call at filepos `offset` for `length` bytes.

        The result is what that one C call leaves in the caller's buffer, up to the count it returns: on a
        sparse file (holes, or data beyond the last extent) GRUB returns zeros or stops short in ways that
        depend on where each call starts (fsys_xfs.c:520-528), so callers that want GRUB's exact bytes must
        read in the same chunks as mini-os load_file (1 MiB, then doubling). Bytes GRUB's call skips within
        the returned count read as zero. Errors GRUB leaves in errnum are raised as GrubError.
        """
        run = self.fs.new_run()
        run.mem.write(INODEBUF, self._inode)
        filemax = _i32(self.size)
        if filemax != self.size:
            raise self.fs.emulation_error(run, _Undefined(f"{self.path} is {self.size} bytes: GRUB's int filemax "
                                                f"cannot hold it"), self.path)
        filepos, length = grub_read_window(filemax, offset, length)
        run.filepos = filepos
        run.filemax = filemax
        sink = _Sink(None, limit=length)
        try:
            count = run.xfs_read(sink, length)
        except (_Undefined, _Hang) as e:
            raise self.fs.emulation_error(run, e, self.path) from None
        if run.errnum:
            raise GrubError(run.errnum, f"{self.path}: {run.errdetail}")
        assert sink.out is not None
        count = max(0, min(count, length))
        out = bytes(sink.out[:count])
        return out.ljust(count, b"\0")

    def extents(self) -> list[tuple[int, int, int]]:
        """The (file block, filesystem block, length) records GRUB walks for this file, in its order.

        The walk stops at the end of the last bmap btree leaf. GRUB itself does not: a NULL right sibling is
        not 0 after fsb2daddr (fsys_xfs.c:244, 267), so a read that goes past the last extent makes it read
        a "leaf" at a garbage address.
        """
        run = self.fs.new_run()
        run.mem.write(INODEBUF, self._inode)
        out: list[tuple[int, int, int]] = []
        try:
            run.init_extents()
            limit = 1024 + max(0, self.size) // self.fs.bsize
            while len(out) <= limit:
                if run.fmt() == FMT_BTREE and run.nextents == 0 and run.next_raw == M64:
                    break
                xad = run.next_extent()
                if xad is None:
                    break
                out.append(xad)
        except (_Undefined, _Hang) as e:
            raise self.fs.emulation_error(run, e, self.path) from None
        return out

    @property
    def sparse(self) -> bool:
        """True if GRUB's extent walk does not cover the file contiguously from 0 to its size (holes,
        preallocated space): then GRUB's reads return zeros or stop short (see read)."""
        expect = 0
        for offset, _, length in self.extents():
            if offset != expect:
                return True
            expect = offset + length
        return expect * self.fs.bsize < self.size


class XfsFilesystem(Filesystem):
    """A volume GRUB's xfs_mount accepted (a V4 superblock), with the C driver's derived geometry."""

    grub_name = "xfs"

    def __init__(self, vol: Volume, sb: Superblock, *, arch: str = "x86_64") -> None:
        if arch not in ("x86_64", "i386"):
            raise ValueError(f"unknown PV-GRUB architecture {arch!r}")
        self.vol = vol
        self.sb = sb
        self.arch = arch
        self.step_limit = STEP_LIMIT
        # bmap btree records already read without error: (daddr, offset in block) -> (raw, decoded)
        self.rec_cache: dict[tuple[int, int], tuple[bytes, tuple[int, int, int]]] = {}
        self._scratch: bytes | None = None
        self.identity = FsIdentity("xfs", sb.uuid_str, sb.label, sb.features)
        # xfs_mount (l.466-481): C int/u32 views of the superblock fields
        self.bsize = _i32(sb.blocksize)
        self.blklog = sb.blocklog
        self.bdlog = sb.blocklog - 9
        self.rootino = sb.rootino
        self.isize = sb.inodesize
        self.agblocks = sb.agblocks
        self.inopblog = sb.inopblog
        self.agblklog = sb.agblklog
        self.dirblklog = sb.dirblklog
        self.dirbsize = _i32(self.bsize << sb.dirblklog) if self.bsize >= 0 and sb.dirblklog < 32 else 0
        self.btnode_ptr0_off = ((self.bsize - BTREE_BLOCK) // 16) * 8 + BTREE_BLOCK
        self.part_sectors = vol.length // SECTOR
        self.part_start = vol.start // SECTOR
        self.disk_sectors = vol.disk.size // SECTOR

    # --- reads ---
    def read_bytes(self, addr: int, n: int) -> bytes:
        """Volume bytes [addr, addr+n): small reads through the volume's block cache."""
        cache = 4096
        first = addr // cache
        if n <= cache and (addr + n - 1) // cache == first and (first + 1) * cache <= self.vol.length:
            blk = self.vol.read_block(first, cache)
            o = addr - first * cache
            return blk[o:o + n]
        return self.vol.read(addr, n)

    def new_run(self) -> _Run:
        return _Run(self)

    def scratch(self) -> bytes:
        """FSYS_BUF as GRUB's xfs driver finds it on this device (computed once).

        grub_scratch_mem is a static, zero-filled array (mini-os.c:736); before xfs_mount runs, the mount
        functions earlier in fsys_table have read into it (ext2fs, minix, vstafs: probe.fsys_buf_after_probe).
        Leftovers of other devices probed earlier in the same boot are not modelled.
        """
        if self._scratch is None:
            from pvbuild.pvgrub.fs import probe

            self._scratch = bytes(probe.fsys_buf_after_probe(self.vol, "xfs"))
        return self._scratch

    def _geometry_problem(self) -> str | None:
        """Superblock values for which GRUB's own arithmetic is undefined (it checks none of them)."""
        sb = self.sb
        if not 9 <= sb.blocklog <= 16:
            return f"sb_blocklog {sb.blocklog} (GRUB shifts by blocklog - 9)"
        if not 512 <= self.bsize <= 65536:
            return f"sb_blocksize {sb.blocksize}"
        if not 0 < self.isize <= FSYS_BUFLEN - INODEBUF:
            return f"sb_inodesize {sb.inodesize} (GRUB reads inodes into {FSYS_BUFLEN - INODEBUF} bytes)"
        if self.agblklog >= 32 or self.inopblog >= 32 or self.agblklog + self.inopblog >= 64:
            return f"sb_agblklog {self.agblklog} / sb_inopblog {self.inopblog}"
        if self.dirbsize <= 0:
            return f"directory block size {self.bsize} << {sb.dirblklog}"
        return None

    def emulation_error(self, run: _Run, e: _Undefined | _Hang, path: str) -> GrubError:
        """GRUB would misbehave: report the error GRUB already had, else ours (Error 16)."""
        kind = "xfs-hang" if isinstance(e, _Hang) else "xfs-undefined"
        what = ("PV-GRUB would loop forever or hang" if isinstance(e, _Hang)
                else "what PV-GRUB does next is undefined: leftover memory, a fault, or worse")
        hint = self._ftype_hint()
        if run.errnum:
            return GrubError(run.errnum, f"{path}: {run.errdetail}; then {e} ({what}){hint}", code=kind)
        return GrubError(Err.FSYS_CORRUPT, f"{path}: {e} ({what}){hint}", code=kind)

    def _ftype_hint(self) -> str:
        if self.sb.has_ftype:
            return ("; this V4 filesystem has ftype=1 directory entries, which GRUB's xfs driver misparses: "
                    "make it with mkfs.xfs -m crc=0 -n ftype=0")
        return ""

    # --- the Filesystem interface ---
    def open(self, path: str) -> XfsFile:
        """xfs_dir (fsys_xfs.c:537) on an absolute path; the name ends at the first blank."""
        raw = grub_path(path)
        problem = self._geometry_problem()
        if problem is not None:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: XFS superblock with {problem}: GRUB's xfs "
                                              f"driver would compute garbage addresses", code="xfs-geometry")
        run = self.new_run()
        try:
            found = run.xfs_dir(raw)
        except (_Undefined, _Hang) as e:
            raise self.emulation_error(run, e, path) from None
        if run.errnum:
            code = "xfs-ftype" if self.sb.has_ftype else None
            raise GrubError(run.errnum, f"{self.vol.name}{path}: {run.errdetail}{self._ftype_hint()}",
                            code=code)
        assert found
        try:
            inode = run.mem.read(INODEBUF, self.isize)
        except _Undefined as e:
            raise self.emulation_error(run, e, path) from None
        return XfsFile(self, path, inode, run.di_size())

    # --- inode-level access for directory walks (`pvbuild diff`) ---
    @property
    def root_ino(self) -> int:
        return self.rootino

    def _load(self, ino: int) -> _Run:
        """A run whose inode buffer holds inode `ino` (di_read), checked to be an inode ("IN" magic)."""
        problem = self._geometry_problem()
        if problem is not None:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: XFS superblock with {problem}", code="xfs-geometry")
        run = self.new_run()
        where = f"inode {ino}"
        try:
            run.di_read(ino)
            if run.errnum:
                raise GrubError(run.errnum, f"{self.vol.name}: {where}: {run.errdetail}")
            if run.mem.read(INODEBUF, 2) != b"IN":
                raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: {where} has no inode magic",
                                code="fs-corrupt")
        except (_Undefined, _Hang) as e:
            raise self.emulation_error(run, e, where) from None
        return run

    def stat(self, ino: int) -> Inode:
        run = self._load(ino)
        core = run.mem.read(INODEBUF, 96)
        nlink = _be16(core, 6) if core[4] == 1 else _be32(core, 16)
        return Inode(ino=ino, mode=_be16(core, 2), size=max(0, _i64(_be64(core, 56))), uid=_be32(core, 8),
                     gid=_be32(core, 12), mtime=_be32(core, 40), nlink=nlink)

    def listdir(self, ino: int) -> list[DirEntry]:
        """first_dentry/next_dentry (fsys_xfs.c:333-452), the loop xfs_dir runs for `dir` and tab completion.

        A shortform directory's "." (inode 0) and ".." (read with an empty name) are left out, as are "." and
        ".." of block/leaf/node directories. The step bound applies to each entry. An ftype=1 V4 filesystem is
        refused: GRUB's entry layout misreads it (see the module docstring)."""
        if self.sb.has_ftype:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: V4 XFS with ftype=1 directory entries, which "
                                              "GRUB's xfs driver (and so this reader) misparses",
                            code="xfs-ftype")
        run = self._load(ino)
        out: list[DirEntry] = []
        try:
            if run.mode() & IFMT != IFDIR:
                raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: inode {ino} is not a directory",
                                code="bad-file-type")
            name, child = run.first_dentry()
            seen = 0
            while name is not None:
                seen += 1
                if seen > DIR_MAX_ENTRIES + 2:
                    raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: directory inode {ino} has more than "
                                                      f"{DIR_MAX_ENTRIES} entries", code="fs-emulator-limit")
                if run.errnum:
                    raise GrubError(run.errnum, f"{self.vol.name}: directory inode {ino}: {run.errdetail}")
                if name not in (b"", b".", b".."):
                    out.append(DirEntry(name, child))
                run.steps = 0
                name, child = run.next_dentry()
            if run.errnum:
                raise GrubError(run.errnum, f"{self.vol.name}: directory inode {ino}: {run.errdetail}")
        except (_Undefined, _Hang) as e:
            raise self.emulation_error(run, e, f"directory inode {ino}") from None
        return out

    def readlink(self, ino: int) -> bytes:
        run = self._load(ino)
        size = run.di_size()
        if run.mode() & IFMT != IFLNK or not 0 <= size < self.bsize:
            raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: inode {ino} is not a symlink of fewer than "
                                              f"{self.bsize} bytes", code="bad-file-type")
        run.filepos, run.filemax = 0, size
        sink = _Sink(None, limit=size)
        try:
            run.xfs_read(sink, size)
        except (_Undefined, _Hang) as e:
            raise self.emulation_error(run, e, f"symlink inode {ino}") from None
        if run.errnum:
            raise GrubError(run.errnum, f"{self.vol.name}: symlink inode {ino}: {run.errdetail}")
        assert sink.out is not None
        return bytes(sink.out[:size]).ljust(size, b"\0")

    def _runs(self, run: _Run, ino: int, size: int) -> list[tuple[int, int, int, bool]]:
        """The extent records GRUB walks (see XfsFile.extents), with the unwritten flag GRUB ignores."""
        out: list[tuple[int, int, int, bool]] = []
        limit = 1024 + size // max(self.bsize, 1)
        try:
            run.init_extents()
            while True:
                if run.fmt() == FMT_BTREE and run.nextents == 0 and run.next_raw == M64:
                    break
                xad = run.next_extent()
                if xad is None:
                    break
                if len(out) >= limit:
                    raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: inode {ino} has more than {limit} extents",
                                    code="fs-emulator-limit")
                unwritten = bool(run.mem.data[run.xt - BMBT_REC] & 0x80)
                out.append((*xad, unwritten))
        except (_Undefined, _Hang) as e:
            raise self.emulation_error(run, e, f"inode {ino}") from None
        if run.errnum:
            raise GrubError(run.errnum, f"{self.vol.name}: inode {ino}: {run.errdetail}")
        return out

    def content(self, ino: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        run = self._load(ino)
        size = max(0, run.di_size())
        if run.mode() & IFMT != IFREG:
            raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: inode {ino} is not a regular file",
                            code="bad-file-type")
        if run.fmt() == FMT_LOCAL:
            yield run.mem.read(INODEBUF + DI_U, min(size, self.isize - DI_U))
            return
        bs = self.bsize
        pos = 0
        for offset, start, length, unwritten in sorted(self._runs(run, ino, size)):
            first, end = min(offset * bs, size), min((offset + length) * bs, size)
            if first < pos:
                raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: inode {ino}: overlapping extents",
                                code="fs-corrupt")
            while pos < first:
                n = min(chunk, first - pos)
                yield bytes(n)
                pos += n
            base = run.fsb2daddr(start) * SECTOR - offset * bs
            while pos < end:
                n = min(chunk, end - pos)
                yield bytes(n) if unwritten else self.vol.read(base + pos, n)
                pos += n
        while pos < size:
            n = min(chunk, size - pos)
            yield bytes(n)
            pos += n

    def findings(self) -> list[Finding]:
        """What a reader of the report should know about this XFS, beyond whether a given file opens."""
        out: list[Finding] = []
        if self.sb.has_ftype:
            out.append(error("xfs-ftype", f"{self.vol.name}: V4 XFS with ftype=1: PV-GRUB's xfs driver does "
                                          f"not know the file-type byte in directory entries: small "
                                          f"(shortform) directories are always misread (Error 15), larger "
                                          f"ones from the first name of 5, 13, 21, ... bytes on; make /boot "
                                          f"with mkfs.xfs -m crc=0 -n ftype=0"))
        out.append(info("xfs-v4", f"{self.vol.name}: V4 XFS (crc=0) is deprecated in Linux and will be "
                                  f"dropped from the kernel (CONFIG_XFS_SUPPORT_V4) by 2030; PV-GRUB needs "
                                  f"it for /boot"))
        return out
