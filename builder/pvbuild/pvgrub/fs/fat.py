"""PV-GRUB's FAT driver, GRUB 0.97 `stage2/fsys_fat.c` (structures from `stage2/fat.h`), re-implemented to fail
where it fails.

An emulator, not a FAT reader: line numbers ("fsys_fat.c:263") refer to the reference copy in
`reference/pv-grub-src/grub-0.97-with-xen-patches/stage2/`. What it models:

- `fat_mount` (l.74-202), the same test as probe.py `_fat_mount`: an MBR partition type of 0 (whole disk, GPT) or
  a FAT type (hidden or not, l.80-83); a non-zero sects_per_clust; FAT32 exactly when the 16-bit fat_length is 0
  (then dir_entries must be 0, and with mirroring off, flags bit 7, the active FAT `flags & 15` is read, l.127-134);
  FAT12 or FAT16 by the cluster count (> 4087: FAT16, l.148); 512-byte sectors only, a power-of-two cluster, more
  than 2 clusters, a FAT long enough for them (l.162-169); and the media byte in the first FAT entry, bit 3
  ignored (l.173-198). All arithmetic is C `int` (wraps at 2^31). GRUB bug kept: FAT16 needs more than 4085 data
  clusters (l.148, FAT_MAX_12BIT_CLUST = 4087 counts the two reserved entries); Linux and mkfs.vfat call 4085
  clusters FAT16 already, and GRUB reads such a volume with 12-bit FAT entries (`findings()` says so).
- `fat_read` (l.204-296): a FAT12/16 root directory (file_cluster < 0) is read from the fixed root area, at most
  root_max bytes; everything else cluster by cluster along the chain, the FAT read through a 4-sector cache
  (FAT_BUF, l.243-253). FAT entries are not masked on FAT32 (l.253-261): the 4 reserved high bits count, so an
  entry of 0x1xxxxxxx or more is taken for the end of the chain (>= 0x0ffffff8) and 0xfxxxxxxx (e.g. an
  end-of-chain written as 0xffffffff) is negative: Error 16. The end-of-chain marker ends a read *short* with no
  error (l.263-264): a file whose chain is shorter than its size loads fewer bytes. A next cluster < 2 or past the
  last cluster is Error 16 (l.265-269). The *first* cluster is never checked: cluster 0 (the ".." entry of a
  directory in the root, or a damaged entry of a non-empty file) reads two clusters before the data area (the end
  of the FAT12/16 root directory or of the FAT), so "/boot/../x" is Error 15 where Linux opens /x; and a first
  cluster whose high word (bytes 20-21, added on FAT12/16 too) has bit 15 set is a negative int: the file is read
  from the FAT12/16 root directory area (root_max = 0 on FAT32: nothing). A data read that fails is not
  checked (l.284): the loop goes on and the call returns 0 with the error at its end (l.295).
- `fat_dir` (l.298-493): the path ends at NUL or whitespace (so a name with a space cannot be opened), runs of
  '/' are skipped, each component is searched in the directory until an entry whose first byte is 0 or the end of
  the directory (Error 15). Long names (VFAT) are assembled from their entries back to front, taking only the low
  byte of each UTF-16 character (l.311-312, l.418-419: a character of U+0100 or above is cut to its low byte, one
  ending in 00 ends the name there), and used only if the entries are numbered 0x40|n, n-1, ..., 1 with the
  short entry's checksum (l.400-445); they are compared *case-sensitively*. The 8.3 name is compared too, after
  lowercasing A-Z (l.447-463): "MENU    LST" is found as "menu.lst", never as "MENU.LST"; it ends at the
  first blank of each part, and a leading 0x05 (for 0xe5) is not translated. So GRUB's FAT lookup is
  case-insensitive only in the sense that an upper-case 8.3 name must be spelt in lower case. Volume labels,
  deleted entries (0xe5) and entries with attribute bits 0xc8 are skipped (fat.h:88-91); deleted long-name
  entries (0xe5 = 0x40|0x25) start a 37-part name that the next real one replaces. The last component must not
  be a directory (Error 2); an earlier one must be a directory (Error 2). An empty component (a trailing '/')
  matches only an entry whose name is empty (all blanks): normally Error 15. The size is the entry's 32-bit size
  as a C int: 2 GiB or more is negative and reads as an empty file.

NAME_BUF, FAT_BUF and the FAT_SUPER fields are modelled where they matter: the FAT cache starts empty after the
mount (cached_fat = -4096, l.200), and a FAT entry looked up in a cache window nothing was read into (only
reachable through int overflow of `cluster * fat_size`) is Error 16 with code `fs-corrupt` ("undefined").
Each open starts from the state right after the mount, as in GRUB (every grub_open remounts: setup_part ->
open_device -> attempt_mount, disk_io.c:1204, 1125); each read starts there too, where GRUB carries the chain
position and the FAT cache from one read of a file to the next, which changes nothing but speed (a failed FAT
read leaves errnum set and the load stops). A directory whose chain loops back with no 0 entry makes GRUB
search forever: the emulator notices the repeated state (same cluster, same long-name state) and reports
`fs-hang`; beyond STEP_LIMIT entries or cluster steps it gives up the same way.

`stat`/`listdir`/`content` serve `pvbuild diff`: inode numbers are the byte offset of the short entry in the
volume (the root is 1); names are what GRUB's `dir` listing prints (the long name if its checksum matches, else
the lowercased 8.3 name); modes are Linux vfat's defaults with umask 022 (0755, read-only files 0555); mtime is
the entry's write time read as UTC, the way Linux's fat_time_fat2unix does; FAT has no symlinks, uid or gid.

Errors: 15 (`file-not-found`), 2 (`bad-file-type`), 16 corrupt chain (`fs-corrupt`), 24/18/25 reads outside the
partition or image (`fs-corrupt`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

from pvbuild.pvgrub.blockio import SECTOR, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.findings import Finding, error
from pvbuild.pvgrub.fs.base import (
    DIR_MAX_ENTRIES,
    S_IFDIR,
    S_IFREG,
    DirEntry,
    File,
    Filesystem,
    FsIdentity,
    Inode,
)
from pvbuild.pvgrub.fs.grubmem import (
    M32,
    DevRead,
    Hang,
    Undefined,
    emulation_error,
    grub_path,
    grub_read_window,
    i32,
    isspace,
    substring,
)
from pvbuild.pvgrub.fs.grubmem import (
    show as _show,
)
from pvbuild.pvgrub.fs.grubmem import (
    u16 as _u16,
)
from pvbuild.pvgrub.fs.grubmem import (
    u32 as _u32,
)
from pvbuild.pvgrub.fs.probe import FAT_SLICE_TYPES, HIDDEN_SLICE_FLAG

__all__ = ["FatFile", "FatFilesystem", "mount"]

# --- fat.h / fsys_fat.c constants ---
BPB_SIZE = 64  # sizeof(struct fat_bpb), fat.h:36-61
FAT_MAX_12BIT_CLUST = 4087  # fat.h:69
FAT_ATTRIB_NOT_OK_MASK = 0xC8  # fat.h:76
FAT_ATTRIB_DIR = 0x10  # fat.h:77
FAT_ATTRIB_LONGNAME = 0x0F  # fat.h:78
FAT_DIRENTRY_LENGTH = 32  # fat.h:84
FAT_CACHE_SIZE = 2048  # fsys_fat.c:55
MAXINT = 0x7FFFFFFF  # shared.h:55
LONGDIR_POS = (1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30)  # fsys_fat.c:311-312
ROOT_INO = 1  # the root directory has no entry; entries' inode numbers are multiples of 32
STEP_LIMIT = 1_000_000
ATTR_RO = 0x01


def _bsf(v: int) -> int:
    """fsys_fat.c:57 log2 = the bsf instruction: the lowest set bit (0 for 0, undefined in C)."""
    return (v & -v).bit_length() - 1 if v else 0


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


@dataclass(frozen=True)
class _Super:
    """struct fat_superblock (fsys_fat.c:26-47), the fields fat_mount fills."""

    fat_offset: int
    fat_length: int
    fat_size: int  # in nibbles: 3 (FAT12), 4 (FAT16), 8 (FAT32)
    root_offset: int
    root_max: int
    data_offset: int
    num_sectors: int
    num_clust: int
    clust_eof_marker: int
    sects_per_clust: int
    sectsize_bits: int
    clustsize_bits: int
    root_cluster: int

    @property
    def bits(self) -> int:
        return {3: 12, 4: 16, 8: 32}[self.fat_size]


def _grub_mount(vol: Volume) -> tuple[DevRead, _Super | None]:
    """fat_mount (l.74-202): the driver state when it returns 1, else None (dev.errnum tells a failed read)."""
    dev = DevRead(vol)
    s = vol.part_type if vol.part_type is not None else 0  # current_slice, as probe.current_slice
    if s != 0 and (s & ~HIDDEN_SLICE_FLAG) not in FAT_SLICE_TYPES:  # l.80-83 (BSD sub-slices are not modelled)
        return dev, None
    bpb = dev(0, 0, BPB_SIZE)  # l.86
    if bpb is None:
        return dev, None
    spc = bpb[13]
    if spc == 0:  # l.91
        return dev, None
    bytes_per_sect = _u16(bpb, 11)
    reserved, num_fats = _u16(bpb, 14), bpb[16]
    dir_entries, short_sectors, media = _u16(bpb, 17), _u16(bpb, 19), bpb[21]
    fat_length16, flags = _u16(bpb, 22), _u16(bpb, 40)
    long_sectors, fat32_length, root_cluster = _u32(bpb, 32), _u32(bpb, 36), _u32(bpb, 44)
    sectsize_bits = _bsf(bytes_per_sect)  # l.94
    clustsize_bits = sectsize_bits + _bsf(spc)  # l.95-96
    num_sectors = i32(short_sectors if short_sectors else long_sectors)  # l.99-100
    fat_offset = reserved  # l.103
    fat_length = i32(fat_length16 if fat_length16 else fat32_length)  # l.104-105
    root_offset = i32(fat_offset + num_fats * fat_length)  # l.108-109
    root_max = FAT_DIRENTRY_LENGTH * dir_entries  # l.110
    data_offset = i32(root_offset + ((root_max - 1) >> sectsize_bits) + 1)  # l.113-115
    num_clust = i32(2 + _cdiv(i32(num_sectors - data_offset), spc))  # l.116-118
    if not fat_length16:  # l.121-141: FAT32
        if dir_entries:
            return dev, None
        if flags & 0x0080:
            active_fat = flags & 0x000F
            if active_fat >= num_fats:
                return dev, None
            fat_offset = i32(fat_offset + active_fat * fat_length)
        fat_size, eof, root = 8, 0x0FFFFFF8, i32(root_cluster)
    else:  # l.142-158
        if not root_max:
            return dev, None
        root = -1
        fat_size, eof = (4, 0xFFF8) if num_clust > FAT_MAX_12BIT_CLUST else (3, 0xFF8)
    if (bytes_per_sect != 1 << sectsize_bits or bytes_per_sect != SECTOR  # l.162-169
            or spc != 1 << (clustsize_bits - sectsize_bits) or num_clust <= 2
            or _cdiv(i32(fat_size * num_clust), 2 * SECTOR) > fat_length):
        return dev, None
    raw = dev(fat_offset, 0, 4)  # l.173-175
    if raw is None:
        return dev, None
    first_fat = _u32(raw, 0)
    if fat_size == 8:  # l.177-191
        first_fat, magic = first_fat & 0x0FFFFFFF, 0x0FFFFF00
    elif fat_size == 4:
        first_fat, magic = first_fat & 0xFFFF, 0xFF00
    else:
        first_fat, magic = first_fat & 0xFFF, 0x0F00
    if (first_fat | 0x8) != (magic | media | 0x8):  # l.197
        return dev, None
    return dev, _Super(fat_offset, fat_length, fat_size, root_offset, root_max, data_offset, num_sectors, num_clust,
                       eof, spc, sectsize_bits, clustsize_bits, root)


class _Run:
    """The driver's globals for one operation: FAT_SUPER's file/cache fields, FAT_BUF, filepos/filemax, errnum
    (in `dev`). Methods carry the C functions' names."""

    def __init__(self, vol: Volume, sb: _Super) -> None:
        self.vol = vol
        self.sb = sb
        self.dev = DevRead(vol)
        self.steps = 0
        self.step_limit = STEP_LIMIT
        self.cached_fat = -2 * FAT_CACHE_SIZE  # l.200
        self.fat_buf: bytes | None = None  # FAT_BUF: nothing read into it yet
        self.file_cluster = sb.root_cluster
        self.current_cluster_num = MAXINT
        self.current_cluster = 0
        self.filepos = 0
        self.filemax = 0
        self.last_read = -1  # volume byte offset of the last 32-byte entry read (for inode numbers)

    def clone(self) -> _Run:
        new = copy.copy(self)
        new.dev = copy.copy(self.dev)
        return new

    @property
    def errnum(self) -> int:
        return self.dev.errnum

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.step_limit:
            raise Hang(f"more than {self.step_limit} steps of GRUB's fat driver without an answer")

    def start(self, cluster: int, filemax: int) -> None:
        """What fat_dir leaves for a file or directory (l.316-318, l.485-489)."""
        self.file_cluster = cluster
        self.filemax = filemax
        self.filepos = 0
        self.current_cluster_num = MAXINT

    # --- fat_read (l.204-296) ---
    def fat_read(self, length: int) -> tuple[int, bytes]:
        """(the C return value, the bytes put in the caller's buffer). A failed data read leaves zeros there; the
        call then returns 0 (or a short count at the end of the chain, as in C) with errnum set."""
        sb = self.sb
        if self.file_cluster < 0:  # l.212-222: the FAT12/16 root directory
            size = i32(sb.root_max - self.filepos)
            size = min(size, length)
            self.last_read = sb.root_offset * SECTOR + self.filepos
            data = self.dev(sb.root_offset, self.filepos, size)
            if data is None:
                return 0, b""
            self.filepos = i32(self.filepos + size)
            return size, data
        logical_clust = self.filepos >> sb.clustsize_bits  # l.224-230
        offset = self.filepos & ((1 << sb.clustsize_bits) - 1)
        if logical_clust < self.current_cluster_num:
            self.current_cluster_num = 0
            self.current_cluster = self.file_cluster
        ret = 0
        out = bytearray()
        while length > 0:  # l.232-294
            while logical_clust > self.current_cluster_num:  # l.235-273
                self.step()
                fat_entry = i32(self.current_cluster * sb.fat_size)
                cached_pos = i32(fat_entry - self.cached_fat)
                if cached_pos < 0 or cached_pos + sb.fat_size > 2 * FAT_CACHE_SIZE:
                    self.cached_fat = fat_entry & ~(2 * SECTOR - 1)
                    cached_pos = fat_entry - self.cached_fat
                    sector = i32(sb.fat_offset + _cdiv(self.cached_fat, 2 * SECTOR))
                    buf = self.dev(sector, 0, FAT_CACHE_SIZE)
                    if buf is None:
                        return 0, bytes(out)
                    self.fat_buf = buf
                if self.fat_buf is None:
                    raise Undefined(f"cluster {self.current_cluster}: GRUB would look up its FAT entry in a FAT_BUF "
                                    "window nothing was read into (cluster * fat_size overflows an int)")
                # l.253: an `unsigned long` read (8 bytes on x86_64) kept as an int: its low 4 bytes
                at = cached_pos >> 1
                next_cluster = i32(int.from_bytes(self.fat_buf[at:at + 4].ljust(4, b"\0"), "little"))
                if sb.fat_size == 3:  # l.254-261
                    if cached_pos & 1:
                        next_cluster >>= 4
                    next_cluster &= 0xFFF
                elif sb.fat_size == 4:
                    next_cluster &= 0xFFFF
                if next_cluster >= sb.clust_eof_marker:  # l.263-264: a short read, no error
                    return ret, bytes(out)
                if next_cluster < 2 or next_cluster >= sb.num_clust:  # l.265-269
                    self.dev.fail(Err.FSYS_CORRUPT, f"cluster {self.current_cluster} is followed by "
                                                    f"{next_cluster & M32:#x} in the FAT, not a cluster of the "
                                                    f"volume (2..{sb.num_clust - 1})", code="fs-corrupt")
                    return 0, bytes(out)
                self.current_cluster = next_cluster
                self.current_cluster_num += 1
            sector = i32(sb.data_offset + ((self.current_cluster - 2) << (sb.clustsize_bits - sb.sectsize_bits)))
            size = (1 << sb.clustsize_bits) - offset  # l.278-280
            size = min(size, length)
            self.last_read = (sector & M32) * SECTOR + offset
            data = self.dev(sector, offset, size)  # l.284: the result is not checked
            out += data if data is not None and len(data) == size else bytes(size)
            length -= size
            ret += size
            self.filepos = i32(self.filepos + size)
            logical_clust += 1
            offset = 0
        return (0 if self.errnum else ret), bytes(out)

    # --- fat_dir (l.298-493) ---
    def entries(self, seen: set[tuple[int, int, int]], lfn: list[int]) -> Iterator[tuple[bytes, bytes | None]]:
        """The directory scan of l.359-481 for the directory the run was started on: each valid short entry as
        (dir_buf, the long name if its checksum matched at l.432-435, else None). Ends at an entry starting with
        0 or the end of the directory; a failed read leaves errnum set. `lfn` is [slot, alias_checksum].

        NAME_BUF: the long name is assembled in it from back to front (l.404, l.415-419); the 8.3 name overwrites
        its start for every short entry (l.451-462), which no later decision depends on."""
        filename = bytearray(1024)
        mask = (1 << self.sb.clustsize_bits) - 1
        while True:
            self.step()
            count, dir_buf = self.fat_read(FAT_DIRENTRY_LENGTH)  # l.361
            if count != FAT_DIRENTRY_LENGTH or dir_buf[0] == 0:
                return
            if self.file_cluster >= 0 and (self.filepos - FAT_DIRENTRY_LENGTH) & mask == 0:
                key = (self.current_cluster, lfn[0], lfn[1])
                if key in seen:
                    raise Hang(f"the directory's cluster chain comes back to cluster {self.current_cluster} with no "
                               "end-of-directory entry: GRUB searches it forever")
                seen.add(key)
            if dir_buf[11] == FAT_ATTRIB_LONGNAME:  # l.383-421
                ident = dir_buf[0]
                if ident & 0x40:
                    ident &= 0x3F
                    lfn[0] = ident
                    filename[ident * 13] = 0
                    lfn[1] = dir_buf[13]
                if ident != lfn[0] or lfn[0] == 0 or lfn[1] != dir_buf[13]:
                    lfn[1] = -1
                    continue
                lfn[0] -= 1
                at = lfn[0] * 13
                for i in range(13):
                    filename[at + i] = dir_buf[LONGDIR_POS[i]]
                continue
            if dir_buf[0] in (0, 0xE5) or dir_buf[11] & FAT_ATTRIB_NOT_OK_MASK:  # l.423-424 (fat.h:88-91)
                continue
            long_name: bytes | None = None
            if lfn[1] != -1 and lfn[0] == 0:  # l.426-445
                lfn[0] = -2
                total = 0
                for i in range(11):
                    total = ((((total >> 1) | (total << 7)) & 0xFF) + dir_buf[i]) & 0xFF
                if total == lfn[1]:
                    long_name = bytes(filename).split(b"\0", 1)[0]
            yield dir_buf, long_name

    @staticmethod
    def short_name(dir_buf: bytes) -> bytes:
        """l.447-463: the 8.3 name lowercased (A-Z only), each part ending at its first blank or NUL."""
        def low(c: int) -> int:
            return c + 32 if 0x41 <= c <= 0x5A else c

        name = bytearray()
        for i in range(8):
            c = low(dir_buf[i])
            if c == 0 or isspace(c):
                break
            name.append(c)
        ext = bytearray()
        for j in range(3):
            c = low(dir_buf[8 + j])
            if c == 0 or isspace(c):
                break
            ext.append(c)
        return bytes(name + b"." + ext) if ext else bytes(name)

    def fat_dir(self, path: bytes) -> bool:
        """l.298-493 for opening a file (print_possibilities 0)."""
        name = path + b"\0"
        pos = 0
        attrib = FAT_ATTRIB_DIR
        self.start(self.sb.root_cluster, self.filemax)  # l.316-318
        where = "the root directory"
        lfn = [-2, -1]  # slot, alias_checksum (l.313-314): set once, carried from one directory to the next
        while True:
            c = name[pos]
            if not c or isspace(c):  # l.326-335
                if attrib & FAT_ATTRIB_DIR:
                    self.dev.fail(Err.BAD_FILETYPE, f"{where} is a directory, not a file", code="bad-file-type")
                    return False
                return True
            while name[pos] == 0x2F:  # l.339-340
                pos += 1
            if not attrib & FAT_ATTRIB_DIR:  # l.342-346
                self.dev.fail(Err.BAD_FILETYPE, f"{where} is a file, not a directory", code="bad-file-type")
                return False
            self.filemax = MAXINT  # l.348
            rest = pos
            while name[rest] and not isspace(name[rest]) and name[rest] != 0x2F:  # l.350
                rest += 1
            component = name[pos:rest]
            found: bytes | None = None
            for dir_buf, long_name in self.entries(set(), lfn):
                if long_name is not None and substring(component, 0, _reader(long_name)) == 0:  # l.442-443
                    found = dir_buf
                    break
                if substring(component, 0, _reader(self.short_name(dir_buf))) == 0:  # l.479-480
                    found = dir_buf
                    break
            if found is None:  # l.361-381
                if not self.errnum:
                    self.dev.fail(Err.FILE_NOT_FOUND, f"{_show(component)} not found in {where}",
                                  code="file-not-found")
                return False
            pos = rest  # l.483-489
            attrib = found[11]
            where = _show(path[:rest])
            self.start(_first_cluster(found), i32(_u32(found, 28)))


def _reader(s: bytes) -> object:
    return lambda i: s[i] if i < len(s) else 0


def _first_cluster(entry: bytes) -> int:
    """fat.h:92-93 FAT_DIRENTRY_FIRST_CLUSTER as the C int it is stored in (the high word may make it negative)."""
    return i32(_u16(entry, 26) + (_u16(entry, 20) << 16))


_DAYS_IN_YEAR = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 0, 0, 0)


def fat_mtime(entry: bytes) -> int:
    """Linux fs/fat/misc.c fat_time_fat2unix with tz=UTC: the entry's write time and date (bytes 22-25)."""
    time, date = _u16(entry, 22), _u16(entry, 24)
    year = date >> 9
    month = max(1, (date >> 5) & 0xF)
    day = max(1, date & 0x1F) - 1
    leap_day = (year + 3) // 4
    if year > 120:  # 2100 is not a leap year
        leap_day -= 1
    if not year & 3 and year != 120 and month > 2:  # IS_LEAP_YEAR (1980 is a leap year)
        leap_day += 1
    second = (time & 0x1F) << 1
    second += ((time >> 5) & 0x3F) * 60
    second += (time >> 11) * 3600
    return second + (year * 365 + leap_day + _DAYS_IN_YEAR[month] + day + 3652) * 86400  # DAYS_DELTA: 1970-1979


def mount(vol: Volume, *, arch: str = "x86_64") -> FatFilesystem | None:
    """GRUB's fat_mount: a filesystem exactly when the C function returns 1 (probe.py `_fat_mount`'s answer); a
    failed read raises GrubError with the number GRUB keeps in errnum. `arch` changes nothing: the driver's
    `unsigned long` reads are cut to 32 bits on both."""
    dev, sb = _grub_mount(vol)
    if dev.errnum:
        raise GrubError(dev.errnum, f"{vol.name}: fat mount: {dev.detail}", code="fs-corrupt")
    if sb is None:
        return None
    return FatFilesystem(vol, sb)


class FatFile(File):
    """A file fat_dir found: its first cluster and size, read through fat_read."""

    def __init__(self, fs: FatFilesystem, path: str, cluster: int, filemax: int) -> None:
        self.fs = fs
        self.path = path
        self.cluster = cluster
        self.filemax = filemax
        self.size = filemax if filemax >= 0 else 0

    def read(self, offset: int, length: int) -> bytes:
        """One grub_read (disk_io.c:1658): filepos and len clipped to filemax, then fat_read. A short count (the
        chain ended first) is returned as is (GRUB returns it too)."""
        run = self.fs.new_run()
        filemax = self.filemax
        filepos, length = grub_read_window(filemax, offset, length)
        if length <= 0:
            return b""
        run.start(self.cluster, filemax)
        run.filepos = filepos
        try:
            count, data = run.fat_read(length)
        except (Undefined, Hang) as e:
            raise self.fs.emulation_error(run, e, self.path) from None
        if run.errnum:
            raise GrubError(run.errnum, f"{self.fs.vol.name}{self.path}: {run.dev.detail}",
                            code=run.dev.code or "fs-corrupt")
        return data[:max(0, min(count, length))]


class FatFilesystem(Filesystem):
    """A volume GRUB's fat_mount accepted."""

    grub_name = "fat"

    def __init__(self, vol: Volume, sb: _Super) -> None:
        from pvbuild.pvgrub.fs import probe

        self.vol = vol
        self.sb = sb
        self.step_limit = STEP_LIMIT  # GRUB steps per open or read before the emulator calls it a hang
        ident = probe.identify(vol)  # blkid's view (UUID, label) for root=UUID=/LABEL=
        version = f"FAT{sb.bits}"
        if ident is None or ident.fstype != "vfat":
            ident = FsIdentity("vfat", None, None, (version,))
        cluster = SECTOR << (sb.clustsize_bits - sb.sectsize_bits)
        self.identity = FsIdentity("vfat", ident.uuid, ident.label, (version, f"cluster={cluster}"))

    def findings(self) -> list[Finding]:
        """fsys_fat.c:148: GRUB counts FAT16 only above 4085 data clusters (num_clust > 4087, the two reserved
        entries included); Linux (MAX_FAT12 = 4084) and mkfs call 4085 clusters FAT16. GRUB then reads that
        FAT16 with 12-bit entries and misreads every file of more than one cluster."""
        if self.sb.fat_size == 3 and self.sb.num_clust - 2 == FAT_MAX_12BIT_CLUST - 2:
            return [error("fs-feature-unsupported", f"{self.vol.name}: a FAT16 of exactly 4085 clusters, which "
                                                    "PV-GRUB's fat driver takes for FAT12: it misreads the FAT and "
                                                    "every file of more than one cluster; make it with another size "
                                                    "or cluster size")]
        return []

    def new_run(self) -> _Run:
        run = _Run(self.vol, self.sb)
        run.step_limit = self.step_limit
        return run

    def emulation_error(self, run: _Run, e: Undefined | Hang, path: str) -> GrubError:
        return emulation_error(self.vol.name, run.errnum, run.dev.detail, e, path)

    def open(self, path: str) -> FatFile:
        """fat_dir (fsys_fat.c:298) on an absolute path, then grub_open's gunzip_test_header (disk_io.c:1647,
        gunzip.c), whose first read of up to 10 bytes fails the open when it fails."""
        raw = grub_path(path)
        run = self.new_run()
        try:
            ok = run.fat_dir(raw)
        except (Undefined, Hang) as e:
            raise self.emulation_error(run, e, path) from None
        if run.errnum or not ok:
            number = run.errnum or Err.FSYS_CORRUPT
            raise GrubError(number, f"{self.vol.name}{path}: {run.dev.detail}", code=run.dev.code or "fs-corrupt")
        f = FatFile(self, path, run.file_cluster, run.filemax)
        f.read(0, min(10, f.size))
        return f

    # --- directory walks (`pvbuild diff`) ---
    @property
    def root_ino(self) -> int:
        return ROOT_INO

    def _entry(self, ino: int) -> bytes:
        if ino == ROOT_INO:
            raise AssertionError("the root directory has no entry")
        if ino < 0 or ino % FAT_DIRENTRY_LENGTH or ino + FAT_DIRENTRY_LENGTH > self.vol.length:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: {ino} is not the place of a directory entry",
                            code="fs-corrupt")
        entry = self.vol.read(ino, FAT_DIRENTRY_LENGTH)
        if entry[11] == FAT_ATTRIB_LONGNAME or entry[0] in (0, 0xE5) or entry[11] & FAT_ATTRIB_NOT_OK_MASK:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: the entry at byte {ino} is not a file or directory",
                            code="fs-corrupt")
        return entry

    def stat(self, ino: int) -> Inode:
        if ino == ROOT_INO:
            return Inode(ino=ino, mode=S_IFDIR | 0o755, size=0, uid=0, gid=0, mtime=0, nlink=1)
        entry = self._entry(ino)
        if entry[11] & FAT_ATTRIB_DIR:
            return Inode(ino=ino, mode=S_IFDIR | 0o755, size=0, uid=0, gid=0, mtime=fat_mtime(entry), nlink=1)
        mode = S_IFREG | (0o555 if entry[11] & ATTR_RO else 0o755)
        return Inode(ino=ino, mode=mode, size=_u32(entry, 28), uid=0, gid=0, mtime=fat_mtime(entry), nlink=1)

    def listdir(self, ino: int) -> list[DirEntry]:
        """The scan fat_dir makes for `dir` and tab completion (l.438-439, l.466-476): each valid short entry as
        its long name when the long-name checksum matches, else its lowercased 8.3 name; "." and ".." (and empty
        names) left out."""
        if ino == ROOT_INO:
            cluster = self.sb.root_cluster
        else:
            entry = self._entry(ino)
            if not entry[11] & FAT_ATTRIB_DIR:
                raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: the entry at byte {ino} is not a directory",
                                code="bad-file-type")
            cluster = _first_cluster(entry)
        run = self.new_run()
        run.start(cluster, MAXINT)
        out: list[DirEntry] = []
        where = f"directory at {ino}"
        try:
            for dir_buf, long_name in run.entries(set(), [-2, -1]):
                name = long_name if long_name is not None else run.short_name(dir_buf)
                if name not in (b"", b".", b".."):
                    if len(out) >= DIR_MAX_ENTRIES:
                        raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: {where} has more than "
                                                          f"{DIR_MAX_ENTRIES} entries", code="fs-emulator-limit")
                    out.append(DirEntry(name, run.last_read))
        except (Undefined, Hang) as e:
            raise self.emulation_error(run, e, where) from None
        if run.errnum:
            raise GrubError(run.errnum, f"{self.vol.name}: {where}: {run.dev.detail}",
                            code=run.dev.code or "fs-corrupt")
        return out

    def readlink(self, ino: int) -> bytes:
        raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: FAT has no symbolic links", code="bad-file-type")

    def content(self, ino: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The file as PV-GRUB reads it (fat_read along the chain), which is what Linux reads for any file GRUB
        can load; files of 2 GiB or more (GRUB reads them as empty) are refused."""
        entry = self._entry(ino) if ino != ROOT_INO else bytes(32)
        if ino == ROOT_INO or entry[11] & FAT_ATTRIB_DIR:
            raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: {ino} is not a regular file", code="bad-file-type")
        size = _u32(entry, 28)
        if size > MAXINT:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: the file at {ino} is {size} bytes, more than "
                                              "PV-GRUB's fat driver reads", code="fs-emulator-limit")
        run = self.new_run()
        run.start(_first_cluster(entry), size)
        pos = 0
        while pos < size:
            n = min(chunk, size - pos)
            run.steps = 0
            try:
                count, data = run.fat_read(n)
            except (Undefined, Hang) as e:
                raise self.emulation_error(run, e, f"file at {ino}") from None
            if run.errnum:
                raise GrubError(run.errnum, f"{self.vol.name}: file at {ino}: {run.dev.detail}",
                                code=run.dev.code or "fs-corrupt")
            if count < n:
                raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: file at {ino}: its cluster chain ends after "
                                                  f"{pos + max(count, 0)} of {size} bytes", code="fs-corrupt")
            yield data[:n]
            pos += n
