"""PV-GRUB's Minix driver, GRUB 0.97 `stage2/fsys_minix.c`, re-implemented to fail where it fails.

An emulator, not a Minix reader: line numbers ("fsys_minix.c:201") refer to the reference copy in
`reference/pv-grub-src/grub-0.97-with-xen-patches/stage2/`. What it models:

- `minix_mount` (l.160-189): partition type 0 (whole disk), 0x80 or 0x81; at least 2 sectors; the 24-byte
  superblock at 1 KiB read into FSYS_BUF; magic 0x137F (14-character names) or 0x138F (30). Minix v1 only:
  v2 (0x2468 / 0x2478) and v3 (magic 0x4D5A at offset 24, which GRUB never reads: offset 16 then holds the low
  half of s_max_size, 0xFFFF as mkfs.minix -3 writes it, not a v1 magic) are not mounted. Nothing else is
  checked: s_log_zone_size is ignored (a zone is taken to be one 1 KiB block), s_firstdatazone and s_ninodes
  too.
- Blocks (`minix_block_map`, l.201-242): zones 0-6 direct, zone 7 indirect, zone 8 double indirect, 16-bit
  block numbers, 512 per 1 KiB block. A zero zone is *not* a hole: a direct zone 0 reads block 0 of the
  partition (the boot block) instead of zeros; a zero indirect or double-indirect pointer is Error 16. Past
  the 7 + 512 + 512*512 blocks a double-indirect block maps, GRUB indexes DATABLOCK1 past its end (l.233) and
  reads whatever FSYS_BUF holds there. The indirect blocks are cached by `mapblock1`/`mapblock2` exactly as in C.
- `minix_read` (l.245-288): one block at a time; a failed read sets errnum and the call returns 0.
- `minix_dir` (l.296-532): inode N is in block 2 + s_imap_blocks + s_zmap_blocks + (N-1)/32 (l.337); a
  directory is scanned entry by entry (16 or 32 bytes), re-reading its block for every entry; a name is
  compared with `substring` up to `namelen` characters (a longer path component never matches: Error 15). A
  directory of size 0 or a non-directory in the middle of the path is Error 2, the end of the path not being
  a regular file too. Symlinks: at most MAX_LINK_COUNT = 5 (6th: Error 26); the target plus the rest of the
  path must fit in the 1 KiB linkbuf (l.372: more than 1022 bytes is Error 14); absolute targets restart at the
  root inode 1, relative ones in the directory holding the link. An empty symlink makes grub_read return 0, and
  minix_dir returns 0 *without* an error number (l.389-390): the open fails silently (code `fs-silent-failure`).
  An empty path component (a trailing "/") matches nothing: Error 15.

FSYS_BUF is modelled byte for byte (superblock at 0, INODE at 1 KiB -- the whole inode block is read there,
over DATABLOCK1 --, DATABLOCK1 at 1 KiB + 32, DATABLOCK2 at 2 KiB + 32; the rest as the mount functions tried
before minix left it, probe.fsys_buf_after_probe). Reads past FSYS_BUF, of linkbuf bytes nothing wrote, and the
like give Error 16 with code `fs-corrupt` ("undefined").

Errors: 15 (`file-not-found`), 2 (`bad-file-type`), 26 (`symlink-loop`), 14 (`fs-symlink-too-long`), 16
(`fs-corrupt`), 24/18 reads outside the partition or the disk.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Iterator

from pvbuild.pvgrub.blockio import SECTOR, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs.base import (
    DIR_MAX_ENTRIES,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    DirEntry,
    File,
    Filesystem,
    FsIdentity,
    Inode,
)
from pvbuild.pvgrub.fs.grubmem import (
    FSYS_BUFLEN,
    M32,
    DevRead,
    Hang,
    StackBuf,
    Undefined,
    emulation_error,
    grub_path,
    grub_read_window,
    i32,
    isspace,
    store,
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

__all__ = ["MinixFile", "MinixFilesystem", "mount"]

# --- fsys_minix.c constants ---
BLOCK_SIZE_BITS = 10
BLOCK_SIZE = 1 << BLOCK_SIZE_BITS
SBLOCK = 2  # l.46
MINIX_ROOT_INO = 1
MINIX_SUPER_MAGIC, MINIX_SUPER_MAGIC2 = 0x137F, 0x138F
MINIX2_SUPER_MAGIC, MINIX2_SUPER_MAGIC2, MINIX3_SUPER_MAGIC = 0x2468, 0x2478, 0x4D5A
INODE_SIZE = 32  # sizeof(struct minix_inode)
INODES_PER_BLOCK = BLOCK_SIZE // INODE_SIZE
PATH_MAX = 1024  # l.156
MAX_LINK_COUNT = 5  # l.157
MINIX_TYPES = (0x80, 0x81)

# l.138-145: where the driver keeps its buffers in FSYS_BUF
SUPERBLOCK = 0
INODE = SUPERBLOCK + BLOCK_SIZE
DATABLOCK1 = INODE + INODE_SIZE
DATABLOCK2 = DATABLOCK1 + BLOCK_SIZE
I_ZONE = 14  # offsetof(struct minix_inode, i_zone)
STEP_LIMIT = 2_000_000


class _Run:
    """The driver's globals for one operation (mapblock1/2, namelen, filepos/filemax, errnum in `dev`) and
    FSYS_BUF."""

    def __init__(self, vol: Volume, fsys_buf: bytes) -> None:
        self.vol = vol
        self.dev = DevRead(vol)
        self.mem = bytearray(fsys_buf[:FSYS_BUFLEN].ljust(FSYS_BUFLEN, b"\0"))
        self.namelen = 0
        self.mapblock1 = -1
        self.mapblock2 = -1
        self.filepos = 0
        self.filemax = 0
        self.steps = 0
        self.step_limit = STEP_LIMIT

    def clone(self) -> _Run:
        new = copy.copy(self)
        new.dev = copy.copy(self.dev)
        new.mem = bytearray(self.mem)
        return new

    @property
    def errnum(self) -> int:
        return self.dev.errnum

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.step_limit:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: more than {self.step_limit} steps of GRUB's "
                                              "minix driver without an answer", code="fs-emulator-limit")

    # --- FSYS_BUF ---
    def rd(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > FSYS_BUFLEN:
            raise Undefined(f"GRUB would read {n} bytes at offset {off} of its 32 KiB FSYS_BUF, outside it")
        return bytes(self.mem[off:off + n])

    def m16(self, off: int) -> int:
        return _u16(self.rd(off, 2), 0)

    def m32(self, off: int) -> int:
        return _u32(self.rd(off, 4), 0)

    @property
    def i_mode(self) -> int:
        return self.m16(INODE)

    @property
    def i_size(self) -> int:
        return self.m32(INODE + 4)

    def zone(self, k: int) -> int:
        return self.m16(INODE + I_ZONE + 2 * k)

    # --- l.192-197 minix_rdfsb ---
    def rdfsb(self, fsblock: int, buffer: int) -> bool:
        data = self.dev(i32(fsblock * (BLOCK_SIZE // SECTOR)), 0, BLOCK_SIZE)
        if data is None:
            return False
        if buffer + BLOCK_SIZE > FSYS_BUFLEN:
            raise Undefined("GRUB would read a block past the end of FSYS_BUF")
        self.mem[buffer:buffer + BLOCK_SIZE] = data
        return True

    # --- l.201-242 minix_block_map ---
    def block_map(self, logical_block: int) -> int:
        if logical_block < 7:
            return self.zone(logical_block)
        logical_block -= 7
        if logical_block < 512:
            i = self.zone(7)
            if not i or (self.mapblock1 != 1 and not self.rdfsb(i, DATABLOCK1)):
                self.dev.fail(Err.FSYS_CORRUPT, f"logical block {logical_block + 7}: the indirect zone is "
                                                f"{'0' if not i else f'{i}, unreadable'}", code="fs-corrupt")
                return -1
            self.mapblock1 = 1
            return self.m16(DATABLOCK1 + 2 * logical_block)
        logical_block -= 512
        i = self.zone(8)
        if not i or (self.mapblock1 != 2 and not self.rdfsb(i, DATABLOCK1)):
            self.dev.fail(Err.FSYS_CORRUPT, f"logical block {logical_block + 519}: the double-indirect zone is "
                                            f"{'0' if not i else f'{i}, unreadable'}", code="fs-corrupt")
            return -1
        self.mapblock1 = 2
        i = self.m16(DATABLOCK1 + 2 * (logical_block >> 9))  # past 512 entries: past DATABLOCK1 (a GRUB bug)
        if not i or (self.mapblock2 != i and not self.rdfsb(i, DATABLOCK2)):
            self.dev.fail(Err.FSYS_CORRUPT, f"logical block {logical_block + 519}: its indirect block is "
                                            f"{'0' if not i else f'{i}, unreadable'}", code="fs-corrupt")
            return -1
        self.mapblock2 = i
        return self.m16(DATABLOCK2 + 2 * (logical_block & 511))

    # --- l.245-288 minix_read ---
    def minix_read(self, out: bytearray | StackBuf, at: int, length: int) -> int:
        ret = 0
        while length > 0:
            self.step()
            logical_block = self.filepos >> BLOCK_SIZE_BITS
            offset = self.filepos & (BLOCK_SIZE - 1)
            m = self.block_map(logical_block)
            if m < 0:
                break
            size = min(BLOCK_SIZE - offset, length)
            data = self.dev(i32(m * (BLOCK_SIZE // SECTOR)), offset, size)
            if data is not None:
                store(out, at, data, "minix_read")
            at += size
            length -= size
            self.filepos += size
            ret += size
        return 0 if self.errnum else ret

    # --- l.296-532 minix_dir ---
    def load_inode(self, ino: int) -> bool:
        """l.337-349: read the inode's block into INODE and move the inode to its start."""
        ino_blk = 2 + self.m16(SUPERBLOCK + 4) + self.m16(SUPERBLOCK + 6) + int((ino - 1) / INODES_PER_BLOCK)
        if not self.rdfsb(ino_blk, INODE):
            return False
        self.mapblock2 = self.mapblock1 = -1
        raw = INODE + ((ino - 1) % INODES_PER_BLOCK) * INODE_SIZE
        self.mem[INODE:INODE + INODE_SIZE] = self.rd(raw, INODE_SIZE)
        return True

    def minix_dir(self, path: bytes) -> bool:
        pathbuf = StackBuf(len(path) + 1, "file name")
        for k, c in enumerate(path + b"\0"):
            pathbuf.put(k, c)
        linkbuf = StackBuf(PATH_MAX, "symlink buffer (linkbuf)")
        name, pos = pathbuf, 0
        current_ino = updir_ino = MINIX_ROOT_INO
        link_count = 0
        while True:
            self.step()
            if not self.load_inode(current_ino):
                return False
            mode = self.i_mode
            if mode & S_IFMT == S_IFLNK:  # l.352-411
                link_count += 1
                if link_count > MAX_LINK_COUNT:
                    self.dev.fail(Err.SYMLINK_LOOP, f"more than {MAX_LINK_COUNT} symbolic links", code="symlink-loop")
                    return False
                n = 0
                while name.get(pos + n) and not isspace(name.get(pos + n)):
                    n += 1
                self.filemax = i32(self.i_size)
                total = i32(self.filemax + n)
                if total < 0 or total > PATH_MAX - 2:  # l.372: compared as size_t
                    self.dev.fail(Err.FILELENGTH, f"symlink inode {current_ino} ({self.i_size} bytes) and the "
                                                  f"rest of the path ({n} bytes) exceed GRUB's {PATH_MAX}-byte "
                                                  "link buffer", code="fs-symlink-too-long")
                    return False
                if n:  # l.382 memmove: DIRNAME and LINKBUF may overlap
                    moved = [name.get(pos + k) for k in range(n)]
                    for k, c in enumerate(moved):
                        linkbuf.put(self.filemax + k, c)
                linkbuf.put(self.filemax + n, 0)
                got = self.grub_read(linkbuf, self.filemax)
                self.filepos = 0
                if not got:  # l.389-390: errnum may still be 0 (an empty symlink)
                    if not self.errnum:
                        self.dev.fail(Err.NONE, f"symlink inode {current_ino} is empty: grub_read returns 0 and "
                                                "minix_dir fails without an error number", code="fs-silent-failure")
                    return False
                name, pos = linkbuf, 0
                if linkbuf.get(0) == 0x2F:
                    current_ino = updir_ino = MINIX_ROOT_INO
                else:
                    current_ino = updir_ino
                continue
            c0 = name.get(pos)
            if not c0 or isspace(c0):  # l.414-424
                if mode & S_IFMT != S_IFREG:
                    self.dev.fail(Err.BAD_FILETYPE, f"inode {current_ino} is not a regular file (mode {mode:o})",
                                  code="bad-file-type")
                    return False
                self.filemax = i32(self.i_size)
                return True
            updir_ino = current_ino
            while name.get(pos) == 0x2F:
                pos += 1
            if not self.i_size or mode & S_IFMT != S_IFDIR:  # l.435-439
                what = "an empty directory" if mode & S_IFMT == S_IFDIR else f"not a directory (mode {mode:o})"
                self.dev.fail(Err.BAD_FILETYPE, f"inode {current_ino} is {what}", code="bad-file-type")
                return False
            rest = pos
            while True:
                ch = name.get(rest)
                if not ch or isspace(ch) or ch == 0x2F:
                    break
                rest += 1
            name.put(rest, 0)
            component = bytes(name.data[pos:rest])
            loc = 0
            while True:  # l.450-526
                self.step()
                if (loc & M32) >= self.i_size:
                    self.dev.fail(Err.FILE_NOT_FOUND, f"{_show(component)} not found in directory inode "
                                                      f"{current_ino}", code="file-not-found")
                    name.put(rest, ch)
                    return False
                blk = loc >> BLOCK_SIZE_BITS
                m = self.block_map(blk)
                self.mapblock2 = -1
                if m < 0 or not self.rdfsb(m, DATABLOCK2):
                    why = self.dev.detail or "unreadable"
                    self.dev.fail(Err.FSYS_CORRUPT, f"block {blk} of directory inode {current_ino}: {why}",
                                  code="fs-corrupt")
                    name.put(rest, ch)
                    return False
                dp = DATABLOCK2 + (loc & (BLOCK_SIZE - 1))
                loc = i32(loc + 2 + self.namelen)
                ino = self.m16(dp)
                if ino:
                    entry = self.rd(dp + 2, self.namelen + 1)[:self.namelen]
                    if substring(component, 0, lambda i, e=entry: e[i] if i < len(e) else 0) == 0:
                        current_ino = ino
                        name.put(rest, ch)
                        pos = rest
                        break

    def grub_read(self, out: bytearray | StackBuf, length: int) -> int:
        """disk_io.c:1658 grub_read (no compression, no block list, fsmax MAXINT) then minix_read."""
        if self.filepos < 0 or self.filepos > self.filemax:
            self.filepos = self.filemax
        if length < 0 or length > self.filemax - self.filepos:
            length = self.filemax - self.filepos
        if length <= 0:
            return 0
        return self.minix_read(out, 0, length)


def _grub_mount(vol: Volume, fsys_buf: bytes) -> tuple[_Run, bool]:
    """minix_mount (l.160-189): (the driver state, whether it returned 1)."""
    from pvbuild.pvgrub.fs import probe

    run = _Run(vol, fsys_buf)
    s = probe.current_slice(vol)
    if s != 0 and s not in MINIX_TYPES:  # l.163-166
        return run, False
    if vol.length // SECTOR < SBLOCK + 24 // SECTOR:  # l.168-170
        return run, False
    sb = run.dev(SBLOCK, 0, 24)
    if sb is None:
        return run, False
    run.mem[SUPERBLOCK:SUPERBLOCK + 24] = sb
    magic = _u16(sb, 16)
    if magic == MINIX_SUPER_MAGIC:
        run.namelen = 14
    elif magic == MINIX_SUPER_MAGIC2:
        run.namelen = 30
    else:
        return run, False
    return run, True


def mount(vol: Volume, *, arch: str = "x86_64") -> MinixFilesystem | None:
    """GRUB's minix_mount: a filesystem exactly when the C function returns 1; a failed read raises GrubError."""
    from pvbuild.pvgrub.fs import probe

    buf = bytes(probe.fsys_buf_after_probe(vol, "minix", arch=arch))
    run, ok = _grub_mount(vol, buf)
    if not ok:
        if run.errnum:
            raise GrubError(run.errnum, f"{vol.name}: minix mount: {run.dev.detail}", code="fs-corrupt")
        return None
    return MinixFilesystem(vol, run)


class MinixFile(File):
    """A file minix_dir found: its inode in GRUB's buffer, read through minix_read."""

    def __init__(self, fs: MinixFilesystem, path: str, run: _Run) -> None:
        self.fs = fs
        self.path = path
        self._run = run
        self.size = run.filemax if run.filemax >= 0 else 0

    def read(self, offset: int, length: int) -> bytes:
        """One grub_read (disk_io.c:1658): filepos and len clipped to filemax, then minix_read."""
        run = self._run.clone()
        run.step_limit = self.fs.step_limit
        filemax = run.filemax
        filepos, length = grub_read_window(filemax, offset, length)
        if length <= 0:
            return b""
        run.filepos = filepos
        out = bytearray(length)
        try:
            count = run.minix_read(out, 0, length)
        except (Undefined, Hang) as e:
            raise self.fs.emulation_error(run, e, self.path) from None
        if run.errnum:
            raise GrubError(run.errnum, f"{self.fs.vol.name}{self.path}: {run.dev.detail}",
                            code=run.dev.code or "fs-corrupt")
        return bytes(out[:max(0, min(count, length))])


class MinixFilesystem(Filesystem):
    """A volume GRUB's minix_mount accepted, with the superblock the mount left in FSYS_BUF."""

    grub_name = "minix"

    def __init__(self, vol: Volume, run: _Run) -> None:
        from pvbuild.pvgrub.fs import probe

        self.vol = vol
        self._mounted = run
        self.step_limit = STEP_LIMIT
        ident = probe.identify(vol)
        self.identity = ident if ident is not None and ident.fstype == "minix" else FsIdentity("minix")

    @property
    def namelen(self) -> int:
        return self._mounted.namelen

    def emulation_error(self, run: _Run, e: Undefined | Hang, path: str) -> GrubError:
        return emulation_error(self.vol.name, run.errnum, run.dev.detail, e, path)

    def open(self, path: str) -> MinixFile:
        """minix_dir (fsys_minix.c:296) on an absolute path; the name ends at the first blank."""
        raw = grub_path(path)
        run = self._mounted.clone()
        run.step_limit = self.step_limit
        run.filepos = 0  # grub_open (disk_io.c:1556)
        try:
            ok = run.minix_dir(raw)
        except (Undefined, Hang) as e:
            raise self.emulation_error(run, e, path) from None
        if run.errnum or not ok:
            # Error 0 with code fs-silent-failure: minix_dir returned 0 and left errnum clear (an empty symlink).
            number = run.errnum if run.errnum or run.dev.code == "fs-silent-failure" else Err.FSYS_CORRUPT
            raise GrubError(number, f"{self.vol.name}{path}: {run.dev.detail}", code=run.dev.code or "fs-corrupt")
        return MinixFile(self, path, run)

    # --- inode-level access (listings), through the same emulated reads ---
    def _inode_run(self, ino: int) -> _Run:
        run = self._mounted.clone()
        run.step_limit = self.step_limit
        if not 1 <= ino <= 0xFFFF:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: inode {ino} out of range", code="fs-corrupt")
        try:
            ok = run.load_inode(ino)
        except Undefined as e:
            raise self.emulation_error(run, e, f" inode {ino}") from None
        if not ok:
            raise GrubError(run.errnum or Err.FSYS_CORRUPT, f"{self.vol.name}: inode {ino}: {run.dev.detail}",
                            code="fs-corrupt")
        run.filemax = i32(run.i_size)
        run.filepos = 0
        return run

    def _content(self, run: _Run, what: str) -> bytes:
        size = max(run.filemax, 0)
        if size > 1 << 26:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: {what} of {size} bytes is too big to list",
                            code="fs-emulator-limit")
        out = bytearray(size)
        try:
            n = run.grub_read(out, size)
        except (Undefined, Hang) as e:
            raise self.emulation_error(run, e, f" {what}") from None
        if run.errnum:
            raise GrubError(run.errnum, f"{self.vol.name}: {what}: {run.dev.detail}", code="fs-corrupt")
        return bytes(out[:n])

    @property
    def root_ino(self) -> int:
        return MINIX_ROOT_INO

    def stat(self, ino: int) -> Inode:
        run = self._inode_run(ino)
        raw = run.rd(INODE, INODE_SIZE)
        return Inode(ino=ino, mode=_u16(raw, 0), size=_u32(raw, 4), uid=_u16(raw, 2), gid=raw[12],
                     mtime=_u32(raw, 8), nlink=raw[13])

    def listdir(self, ino: int) -> list[DirEntry]:
        """The entries as minix_dir scans them (l.450-526): every 2 + namelen bytes up to i_size, inode 0 skipped."""
        run = self._inode_run(ino)
        if run.i_mode & S_IFMT != S_IFDIR:
            raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: inode {ino} is not a directory",
                            code="bad-file-type")
        data = self._content(run, f"directory inode {ino}")
        step = 2 + self.namelen
        out: list[DirEntry] = []
        for o in range(0, len(data) - step + 1, step):
            e_ino = _u16(data, o)
            if not e_ino:
                continue
            name = data[o + 2:o + step].split(b"\0", 1)[0]
            if name in (b".", b".."):
                continue
            out.append(DirEntry(name, e_ino))
            if len(out) > DIR_MAX_ENTRIES:
                raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: more than {DIR_MAX_ENTRIES} names in one "
                                                  "directory", code="fs-emulator-limit")
        return out

    def content(self, ino: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The file as Linux reads it: a zero zone is a hole (zeros), unlike minix_read, which reads block 0."""
        run = self._inode_run(ino)
        if run.i_mode & S_IFMT != S_IFREG:
            raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: inode {ino} is not a regular file",
                            code="bad-file-type")
        size = run.i_size
        zones = [run.zone(k) for k in range(9)]
        tables: dict[int, tuple[int, ...]] = {}

        def block(z: int) -> bytes:
            try:
                return self.vol.read(z * BLOCK_SIZE, BLOCK_SIZE)
            except GrubError as e:
                raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: inode {ino}: {e.detail}",
                                code="fs-corrupt") from None

        def table(z: int) -> tuple[int, ...]:
            if z not in tables:
                if len(tables) > 1024:
                    tables.clear()
                tables[z] = struct.unpack("<512H", block(z))
            return tables[z]

        def zone_of(k: int) -> int:
            if k < 7:
                return zones[k]
            k -= 7
            if k < 512:
                return table(zones[7])[k] if zones[7] else 0
            k -= 512
            if k >= 512 * 512 or not zones[8]:
                return 0
            mid = table(zones[8])[k >> 9]
            return table(mid)[k & 511] if mid else 0

        buf = bytearray()
        for k in range((size + BLOCK_SIZE - 1) // BLOCK_SIZE):
            z = zone_of(k)
            data = block(z) if z else bytes(BLOCK_SIZE)
            buf += data[:min(BLOCK_SIZE, size - k * BLOCK_SIZE)]
            if len(buf) >= chunk:
                yield bytes(buf[:chunk])
                del buf[:chunk]
        while buf:
            yield bytes(buf[:chunk])
            del buf[:chunk]

    def readlink(self, ino: int) -> bytes:
        run = self._inode_run(ino)
        if run.i_mode & S_IFMT != S_IFLNK:
            raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: inode {ino} is not a symlink", code="bad-file-type")
        return self._content(run, f"symlink inode {ino}")
