"""PV-GRUB's JFS driver, GRUB 0.97 `stage2/fsys_jfs.c` (structures from `stage2/jfs.h`), re-implemented to fail
where it fails.

An emulator, not a JFS reader: line numbers ("fsys_jfs.c:273") refer to the reference copy in
`reference/pv-grub-src/grub-0.97-with-xen-patches/stage2/`. What it models:

- `jfs_mount` (l.207-225): the volume must be at least MINJFS = 16 MiB, the superblock at 32 KiB must say "JFS1"
  and the fileset inode (aggregate inode 16, at 44 KiB + 8 KiB) must be readable. Nothing else is checked: the
  partition type, s_version, s_bsize and s_l2bsize are trusted (bdlog = s_l2bsize - 9).
- Inodes (`di_read`, l.106-128): the fileset inode map is walked through the fileset inode's xtree to the IAG
  holding the inode, then the inode extent; an inode the map does not cover is *not read*: the previous inode
  stays in the buffer and the lookup goes on with it.
- Extents (`first_extent`/`next_extent`, l.66-102): the xtree is descended along its first entry to the
  leftmost leaf, then leaves are followed by `next`. Bug kept: after moving to the next leaf page, next_extent
  returns that page's *second* entry (`++jfs.xad` after setting it to xad[2], l.97-101), so the first extent of
  every leaf page after the first is skipped and one entry past the page's last is read. Files with more than
  the 16 extents an inode holds inline and more than one leaf page of extents (> 254) are misread. Also, an
  inline xtree whose extents run out follows the `next` link of whatever xtree page is left in the buffer.
- `jfs_read` (l.228-270): extents are looked up by file block; a hole between extents is zero-filled (counted
  from the end of the previous extent); a file starting with a hole, or data past the last extent, gives a
  short read. filemax is di_size truncated to a C int.
- `jfs_dir` (l.273-384): directories are the dtree in the inode (up to 8 entries) or, once split, pages read
  from the leftmost leaf along `next`; then ".." and "." (de_always). Names are UTF-16 turned to bytes by
  `uni2ansi` (l.200): every character >= 0x80 becomes '?', so a path must spell a non-ASCII name with '?'
  (and may match a different file); comparison is case-sensitive even on an OS/2 case-insensitive volume.
  Names longer than 11 characters continue in dtslots (15 each). Symlinks: at most MAX_LINK_COUNT = 8 (9th:
  Error 26); fast symlinks (size < 128, or < 256 with INLINEEA) from the inode, others read with jfs_read up to
  4094 bytes (longer: Error 14); absolute targets restart at the root inode 2, relative ones in the directory
  holding the link. Linux keeps targets of up to 255 bytes in the inode but clears INLINEEA once they spill
  into the inline EA area (128 bytes or more), so GRUB reads those with jfs_read as if the inode held an xtree:
  the xtree header Linux left there says "leaf, no entries" and the text is taken for an extent beyond the file,
  nothing is read, the target is empty (plus the rest of the path), and the lookup goes on from a directory
  chosen by uninitialised stack (the root, when the link is in the root: then Error 2 or whatever the rest of
  the path names). The rest of the path is appended to the target in the same 4 KiB buffer byte by byte, so a
  second symlink whose target is longer than the consumed part of the path overwrites the rest first (as GRUB).
  An empty path component (a trailing "/") matches nothing: Error 15.

FSYS_BUF is modelled byte for byte (xtree page at 0, dtree page at 4 KiB, fileset inode at 8 KiB, current inode
at 8.5 KiB; the rest as the mount functions tried before jfs left it, probe.fsys_buf_after_probe), so stale
buffers are read exactly when GRUB reads them. Reads past FSYS_BUF, of uninitialised stack buffers, writes past
the name buffer, and the like give Error 16 with code `fs-corrupt` ("undefined"); loops that would never end
(a page chain or xtree that points back on itself, a read that keeps failing in a descent) code `fs-hang`.

Errors: 15 (`file-not-found`), 2 (`bad-file-type`), 26 (`symlink-loop`), 14 (`fs-symlink-too-long`), 24/18/25
reads outside the partition or image (`fs-corrupt`).
"""

from __future__ import annotations

import copy

from pvbuild.pvgrub.blockio import SECTOR, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.findings import Finding
from pvbuild.pvgrub.fs.base import File, Filesystem, FsIdentity
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
    s8,
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

__all__ = ["JfsFile", "JfsFilesystem", "mount"]

# --- jfs.h / fsys_jfs.c constants ---
MINJFS = 0x1000000  # jfs.h
SUPER1_OFF = 0x8000
AITBL_OFF = SUPER1_OFF + 4096 + (4096 << 1)
FILESYSTEM_I = 16
ROOT_I = 2
DISIZE = 512
L2INOSPERIAG, INOSPERIAG = 12, 4096
L2INOSPEREXT, INOSPEREXT = 5, 32
L2DISIZE = 9
JFS_MAGIC = 0x3153464A
JFS_NAME_MAX = 255
JFS_PATH_MAX = 4096
MAX_LINK_COUNT = 8  # fsys_jfs.c:27
BT_LEAF = 0x02
XTENTRYSTART = 2
DTLHDRDATALEN = 11
DTSLOTDATALEN = 15
IFMT, IFDIR, IFREG, IFLNK = 0xF000, 0x4000, 0x8000, 0xA000
INLINEEA = 0x00040000
DTTYPE_INLINE, DTTYPE_PAGE = 0, 1

# fsys_jfs.c:49-53: where the driver keeps its buffers in FSYS_BUF
XTPAGE, DTPAGE, FILESET, INODE = 0, 4096, 8192, 8192 + DISIZE
BTROOT = 224  # offsetof(dinode_t, di_btroot): 128-byte base area + 96-byte dir table / _u1
STEP_LIMIT = 1_000_000


def _s64(b: bytes | bytearray, o: int) -> int:
    return int.from_bytes(b[o:o + 8], "little", signed=True)


class _Run:
    """The driver's globals for one operation (struct jfs_info, filepos/filemax, errnum in `dev`) and FSYS_BUF.
    Pointers into FSYS_BUF are byte offsets; `de` may also name an entry of the static de_always array."""

    def __init__(self, vol: Volume, fsys_buf: bytes) -> None:
        self.vol = vol
        self.dev = DevRead(vol)
        self.mem = bytearray(fsys_buf[:FSYS_BUFLEN].ljust(FSYS_BUFLEN, b"\0"))
        self.steps = 0
        self.step_limit = STEP_LIMIT
        self.bsize = 0
        self.l2bsize = 0
        self.bdlog = 0
        self.xindex = 0
        self.xlastindex = 0
        self.sindex = 0
        self.slastindex = 0
        self.de_index = 0
        self.dttype = 0
        self.xad = 0
        self.de_always = [[0, b".."], [0, b"."]]  # fsys_jfs.c:55-58: {inumber, name}
        self.filepos = 0
        self.filemax = 0

    def clone(self) -> _Run:
        new = copy.copy(self)
        new.dev = copy.copy(self.dev)
        new.mem = bytearray(self.mem)
        new.de_always = [list(e) for e in self.de_always]
        return new

    @property
    def errnum(self) -> int:
        return self.dev.errnum

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.step_limit:
            raise Hang(f"more than {self.step_limit} steps of GRUB's jfs driver without an answer")

    # --- FSYS_BUF ---
    def rd(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > FSYS_BUFLEN:
            raise Undefined(f"GRUB would read {n} bytes at offset {off} of its 32 KiB FSYS_BUF, outside it")
        return bytes(self.mem[off:off + n])

    def b(self, off: int) -> int:
        return self.rd(off, 1)[0]

    def m16(self, off: int) -> int:
        return _u16(self.rd(off, 2), 0)

    def m32(self, off: int) -> int:
        return _u32(self.rd(off, 4), 0)

    def ms64(self, off: int) -> int:
        return _s64(self.rd(off, 8), 0)

    def sector(self, block: int) -> int:
        """`block << jfs.bdlog` (an s64), as devread's unsigned int sector."""
        if not 0 <= self.bdlog < 64:
            raise Undefined(f"s_l2bsize {self.l2bsize}: GRUB shifts block numbers by {self.bdlog}")
        return (block << self.bdlog) & M32

    def load(self, where: int, sector: int, byte_offset: int, n: int) -> bool:
        data = self.dev(sector, byte_offset, n)
        if data is None:
            return False
        self.mem[where:where + n] = data
        return True

    # --- xad / pxd views (jfs.h) ---
    def offset_xad(self, x: int) -> int:
        return (self.b(x + 3) << 32) | self.m32(x + 4)

    def length_xad(self, x: int) -> int:
        return int.from_bytes(self.rd(x + 8, 3), "little")

    def address_xad(self, x: int) -> int:
        return (self.b(x + 11) << 32) | self.m32(x + 12)

    def address_pxd(self, p: bytes, o: int = 0) -> int:
        return (p[o + 3] << 32) | _u32(p, o + 4)

    # --- extents (l.66-102) ---
    def first_extent(self, di: int) -> int:
        self.xindex = 2
        xtp = di + BTROOT
        self.xad = xtp + 16 * XTENTRYSTART
        if self.b(xtp + 16) & BT_LEAF:
            self.xlastindex = i32(int.from_bytes(self.rd(xtp + 18, 2), "little", signed=True))
        else:
            seen: set[tuple[int, bool]] = set()
            while True:
                self.step()
                addr = self.address_xad(self.xad)
                ok = self.load(XTPAGE, self.sector(addr), 0, 4096)
                if (addr, ok) in seen:
                    raise Hang(f"GRUB's xtree descent reads block {addr} again and again (an xtree page pointing "
                               "back up, or a read that keeps failing)")
                seen.add((addr, ok))
                self.xad = XTPAGE + 16 * XTENTRYSTART
                if self.b(XTPAGE + 16) & BT_LEAF:
                    break
            self.xlastindex = int.from_bytes(self.rd(XTPAGE + 18, 2), "little", signed=True)
        return self.xad

    def next_extent(self, pages: set[int]) -> int | None:
        self.xindex += 1
        if self.xindex < self.xlastindex:
            pass
        elif self.ms64(XTPAGE) != 0:
            nxt = self.ms64(XTPAGE)
            if nxt in pages:
                raise Hang(f"GRUB follows the xtree leaf chain back to page {nxt}: it never ends")
            pages.add(nxt)
            self.load(XTPAGE, self.sector(nxt), 0, 4096)
            self.xlastindex = int.from_bytes(self.rd(XTPAGE + 18, 2), "little", signed=True)
            self.xindex = XTENTRYSTART
            self.xad = XTPAGE + 16 * XTENTRYSTART
        else:
            return None
        self.xad += 16  # `return ++jfs.xad;` -- also right after loading the next page (skips its first xad)
        return self.xad

    # --- inodes (l.106-128) ---
    def di_read(self, inum: int, di: int) -> None:
        inum &= M32
        if not 0 <= self.l2bsize < 64:
            raise Undefined(f"s_l2bsize {self.l2bsize}: GRUB shifts by it")
        key = (((inum >> L2INOSPERIAG) << L2INOSPERIAG) + 4096) >> self.l2bsize
        xd = (inum & (INOSPERIAG - 1)) >> L2INOSPEREXT
        ioffset = ((inum & (INOSPERIAG - 1)) & (INOSPEREXT - 1)) << L2DISIZE
        xad: int | None = self.first_extent(FILESET)
        pages: set[int] = set()
        while xad is not None:
            self.step()
            offset = self.offset_xad(xad)
            if offset <= key < offset + self.length_xad(xad):
                pxd = self.dev(self.sector(self.address_xad(xad) + key - offset), 3072 + xd * 8, 8)
                if pxd is None:
                    return  # errnum set: the second devread (with an uninitialised pxd) reads nothing
                self.load(di, self.sector(self.address_pxd(pxd)), ioffset, DISIZE)
                return
            xad = self.next_extent(pages)

    # --- jfs_read (l.228-270) ---
    def jfs_read(self, out: bytearray | StackBuf, at: int, length: int) -> int:
        startpos = self.filepos
        endpos = self.filepos + length
        endofprev = (1 << 62) - 1
        xad: int | None = self.first_extent(INODE)
        pages: set[int] = set()
        while True:
            self.step()
            assert xad is not None
            offset = self.offset_xad(xad)
            xadlen = self.length_xad(xad)
            if offset <= (self.filepos >> self.l2bsize) < offset + xadlen:
                endofcur = (offset + xadlen) << self.l2bsize
                toread = i32(length if endofcur >= endpos else endofcur - self.filepos)
                data = self.dev(self.sector(self.address_xad(xad)), i32(self.filepos - (offset << self.l2bsize)),
                                toread)
                if data is not None and toread > 0:
                    self._put(out, at, data)
                at += max(toread, 0)
                length -= toread
                self.filepos += toread
            elif offset > endofprev:
                toread = i32(length if (offset << self.l2bsize) >= endpos
                             else (offset - endofprev) << self.l2bsize)
                length -= toread
                self.filepos += toread
                if toread < 0:
                    raise Undefined("GRUB's hole fill would run with a negative count (a crash)")
                self._put(out, at, bytes(toread))
                at += toread
                if not (length > 0 and xad is not None):
                    break
                continue
            endofprev = offset + xadlen
            xad = self.next_extent(pages)
            if not (length > 0 and xad is not None):
                break
        return i32(self.filepos - startpos)

    @staticmethod
    def _put(out: bytearray | StackBuf, at: int, data: bytes) -> None:
        store(out, at, data, "jfs_read")

    # --- directories (l.130-197) ---
    def next_dentry(self, pages: set[int]) -> int | tuple[str, int] | None:
        """An entry: an FSYS_BUF offset, ("always", i) for de_always[i], or None."""
        dtroot = INODE + BTROOT
        if self.dttype == DTTYPE_INLINE:
            if self.sindex < self.slastindex:
                k = s8(self.b(dtroot + 24 + self.sindex))
                self.sindex += 1
                return dtroot + 32 * k
        else:
            stbl = DTPAGE + 32 * s8(self.b(DTPAGE + 21))
            if self.sindex < self.slastindex:
                k = s8(self.b(stbl + self.sindex))
                self.sindex += 1
                return DTPAGE + 32 * k
            nxt = self.ms64(DTPAGE)
            if nxt:
                if nxt in pages:
                    raise Hang(f"GRUB follows the directory page chain back to block {nxt}: it never ends")
                pages.add(nxt)
                self.load(DTPAGE, self.sector(nxt), 0, 4096)
                self.slastindex = s8(self.b(DTPAGE + 17))
                self.sindex = 1
                return DTPAGE + 32 * s8(self.b(DTPAGE + 32 * s8(self.b(DTPAGE + 21))))
        if self.de_index < 2:
            self.de_index += 1
            return ("always", self.de_index - 1)
        return None

    def first_dentry(self, pages: set[int]) -> int | tuple[str, int] | None:
        dtr = INODE + BTROOT
        self.sindex = 0
        self.de_index = 0
        self.de_always[0][0] = self.m32(INODE + BTROOT + 20)  # di_parent
        self.de_always[1][0] = self.m32(INODE + 8)  # di_number
        if self.b(dtr + 16) & BT_LEAF:
            self.dttype = DTTYPE_INLINE
            self.slastindex = s8(self.b(dtr + 17))
        else:
            self.dttype = DTTYPE_PAGE
            xd = dtr + 32 * s8(self.b(dtr + 24))
            seen: set[tuple[int, bool]] = set()
            while True:
                self.step()
                addr = self.address_pxd(self.rd(xd, 8))
                ok = self.load(DTPAGE, self.sector(addr), 0, 4096)
                if (addr, ok) in seen:
                    raise Hang(f"GRUB's dtree descent reads block {addr} again and again")
                seen.add((addr, ok))
                if self.b(DTPAGE + 16) & BT_LEAF:
                    break
                xd = DTPAGE + 32 * s8(self.b(DTPAGE + 32 * s8(self.b(DTPAGE + 21))))
            self.slastindex = s8(self.b(DTPAGE + 17))
        return self.next_dentry(pages)

    def dslot(self, nxt: int) -> int:
        return (INODE + BTROOT if self.dttype == DTTYPE_INLINE else DTPAGE) + 32 * nxt

    def entry_name(self, de: int | tuple[str, int]) -> tuple[int, bytes]:
        """(inumber, namebuf as a C string) for an entry, as l.337-356 build it (uni2ansi, l.200)."""
        if isinstance(de, tuple):
            inum, nm = self.de_always[de[1]]
            assert isinstance(inum, int) and isinstance(nm, bytes)
            return inum, nm
        namebuf = bytearray()

        def uni2ansi(src: int, n: int) -> None:
            if n < 0:
                raise Undefined("GRUB's uni2ansi would run with a negative length (a crash)")
            if len(namebuf) + n > JFS_NAME_MAX:
                raise Undefined(f"a name of more than {JFS_NAME_MAX} characters would overflow GRUB's namebuf")
            for k in range(n):
                u = self.m16(src + 2 * k)
                namebuf.append(0x3F if u & 0xFF80 else u & 0xFF)

        inum = self.m32(de)
        namlen = self.b(de + 5)
        if s8(self.b(de + 4)) == -1:
            uni2ansi(de + 6, namlen)
        else:
            uni2ansi(de + 6, DTLHDRDATALEN)
            namlen -= DTLHDRDATALEN
            ds = self.dslot(s8(self.b(de + 4)))
            while s8(self.b(ds)) != -1:
                self.step()
                uni2ansi(ds + 2, DTSLOTDATALEN)
                namlen -= DTSLOTDATALEN
                ds = self.dslot(s8(self.b(ds)))
            uni2ansi(ds + 2, namlen)
        return inum, bytes(namebuf).split(b"\0", 1)[0]

    # --- jfs_dir (l.273-384) ---
    def jfs_dir(self, path: bytes) -> bool:
        pathbuf = StackBuf(len(path) + 1, "file name")
        for k, c in enumerate(path + b"\0"):
            pathbuf.put(k, c)
        linkbuf = StackBuf(JFS_PATH_MAX, "symlink buffer (linkbuf)")
        name, pos = pathbuf, 0
        inum = parent_inum = ROOT_I
        link_count = 0
        while True:
            self.di_read(inum, INODE)
            di_size = self.ms64(INODE + 24)
            di_mode = self.m32(INODE + 52)
            if di_mode & IFMT == IFLNK:  # l.291-313
                link_count += 1
                if link_count > MAX_LINK_COUNT:
                    self.dev.fail(Err.SYMLINK_LOOP, f"more than {MAX_LINK_COUNT} symbolic links", code="symlink-loop")
                    return False
                if di_size < (256 if di_mode & INLINEEA else 128):
                    if di_size < 0:
                        raise Undefined(f"symlink inode {inum} has a negative size: GRUB's memmove crashes")
                    for k in range(di_size):
                        linkbuf.put(k, self.b(INODE + 256 + k))
                    n = di_size
                elif di_size < JFS_PATH_MAX - 1:
                    self.filepos = 0
                    self.filemax = i32(di_size)
                    n = self.jfs_read(linkbuf, 0, self.filemax)
                else:
                    self.dev.fail(Err.FILELENGTH, f"symlink inode {inum} is {di_size} bytes, longer than GRUB's "
                                                  f"{JFS_PATH_MAX - 1}-byte link buffer", code="fs-symlink-too-long")
                    return False
                if linkbuf.known[0]:
                    inum = ROOT_I if linkbuf.get(0) == 0x2F else parent_inum
                elif parent_inum == ROOT_I:
                    inum = ROOT_I  # linkbuf[0] is stack garbage (jfs_read read nothing), but both choices agree
                else:
                    linkbuf.get(0)  # raises Undefined: which directory GRUB continues in depends on garbage
                while n < JFS_PATH_MAX - 1:  # l.309: while (n < ... && (linkbuf[n++] = *dirname++));
                    self.step()
                    c = name.get(pos)
                    pos += 1
                    linkbuf.put(n, c)
                    n += 1
                    if c == 0:
                        break
                linkbuf.put(n, 0)
                name, pos = linkbuf, 0
                continue
            c0 = name.get(pos)
            if not c0 or isspace(c0):  # l.315-323
                if di_mode & IFMT != IFREG:
                    self.dev.fail(Err.BAD_FILETYPE, f"inode {inum} is not a regular file "
                                                    f"(mode {di_mode & 0xFFFF:o})", code="bad-file-type")
                    return False
                self.filepos = 0
                self.filemax = i32(di_size)
                return True
            if di_mode & IFMT != IFDIR:
                self.dev.fail(Err.BAD_FILETYPE, f"inode {inum} is not a directory "
                                                f"(mode {di_mode & 0xFFFF:o})", code="bad-file-type")
                return False
            while name.get(pos) == 0x2F:
                pos += 1
            rest = pos
            while True:
                ch = name.get(rest)
                if not ch or isspace(ch) or ch == 0x2F:
                    break
                rest += 1
            name.put(rest, 0)
            component = bytes(name.data[pos:rest])
            pages: set[int] = set()
            de = self.first_dentry(pages)
            while True:
                self.step()
                if de is None:  # not reached on the first entry: next_dentry always yields de_always first
                    name.put(rest, ch)
                    self.dev.fail(Err.FILE_NOT_FOUND, f"{_show(component)} not found in directory "
                                                      f"inode {inum}", code="file-not-found")
                    return False
                de_inum, entry = self.entry_name(de)
                cmp = -1 if not component else substring(component, 0, lambda i, e=entry: e[i] if i < len(e) else 0)
                if cmp == 0:
                    parent_inum = inum
                    inum = de_inum
                    pos = rest
                    name.put(rest, ch)
                    break
                de = self.next_dentry(pages)
                if de is None:
                    name.put(rest, ch)
                    self.dev.fail(Err.FILE_NOT_FOUND, f"{_show(component)} not found in directory "
                                                      f"inode {inum}", code="file-not-found")
                    return False


def _grub_mount(vol: Volume, fsys_buf: bytes) -> tuple[_Run, bool]:
    """jfs_mount (l.207-225): (the driver state, whether it returned 1)."""
    run = _Run(vol, fsys_buf)
    if vol.length // SECTOR < MINJFS >> 9:
        return run, False
    sb = run.dev(SUPER1_OFF >> 9, 0, 168)  # sizeof(struct jfs_superblock)
    if sb is None or _u32(sb, 0) != JFS_MAGIC:
        return run, False
    if not run.load(FILESET, (AITBL_OFF >> 9) + FILESYSTEM_I, 0, DISIZE):
        return run, False
    run.bsize = int.from_bytes(sb[16:20], "little", signed=True)
    run.l2bsize = int.from_bytes(sb[20:22], "little", signed=True)
    run.bdlog = run.l2bsize - 9
    return run, True


def mount(vol: Volume, *, arch: str = "x86_64") -> JfsFilesystem | None:
    """GRUB's jfs_mount: a filesystem exactly when the C function returns 1; a failed read raises GrubError."""
    from pvbuild.pvgrub.fs import probe

    buf = bytes(probe.fsys_buf_after_probe(vol, "jfs"))
    run, ok = _grub_mount(vol, buf)
    if run.errnum:
        raise GrubError(run.errnum, f"{vol.name}: jfs mount: {run.dev.detail}", code="fs-corrupt")
    if not ok:
        return None
    return JfsFilesystem(vol, run)


class JfsFile(File):
    """A file jfs_dir found: its inode in GRUB's buffer, read through jfs_read."""

    def __init__(self, fs: JfsFilesystem, path: str, run: _Run) -> None:
        self.fs = fs
        self.path = path
        self._run = run
        self.size = run.filemax if run.filemax >= 0 else 0

    def read(self, offset: int, length: int) -> bytes:
        """One grub_read (disk_io.c:1658): filepos and len clipped to filemax, then jfs_read. A short count is
        returned as is (GRUB returns it too)."""
        run = self._run.clone()
        run.step_limit = self.fs.step_limit
        filemax = run.filemax
        filepos, length = grub_read_window(filemax, offset, length)
        if length <= 0:
            return b""
        run.filepos = filepos
        out = bytearray(length)
        try:
            count = run.jfs_read(out, 0, length)
        except (Undefined, Hang) as e:
            raise self.fs.emulation_error(run, e, self.path) from None
        if run.errnum:
            raise GrubError(run.errnum, f"{self.fs.vol.name}{self.path}: {run.dev.detail}", code="fs-corrupt")
        return bytes(out[:max(0, min(count, length))])


class JfsFilesystem(Filesystem):
    """A volume GRUB's jfs_mount accepted, with the driver state the mount left (the fileset inode read)."""

    grub_name = "jfs"

    def __init__(self, vol: Volume, run: _Run) -> None:
        from pvbuild.pvgrub.fs import probe

        self.vol = vol
        self._mounted = run
        self.step_limit = STEP_LIMIT  # GRUB steps per open or read before the emulator calls it a hang
        ident = probe.identify(vol)
        self.identity = ident if ident is not None and ident.fstype == "jfs" else FsIdentity("jfs")

    def emulation_error(self, run: _Run, e: Undefined | Hang, path: str) -> GrubError:
        return emulation_error(self.vol.name, run.errnum, run.dev.detail, e, path)

    def open(self, path: str) -> JfsFile:
        """jfs_dir (fsys_jfs.c:273) on an absolute path; the name ends at the first blank."""
        raw = grub_path(path)
        run = self._mounted.clone()
        run.step_limit = self.step_limit
        try:
            ok = run.jfs_dir(raw)
        except (Undefined, Hang) as e:
            raise self.emulation_error(run, e, path) from None
        if run.errnum or not ok:
            code, detail = run.dev.code or "fs-corrupt", run.dev.detail
            number = run.errnum or Err.FSYS_CORRUPT
            # jfs_dir may return 1 with errnum set (di_read ignores failed reads): grub_open then fails later.
            raise GrubError(number, f"{self.vol.name}{path}: {detail}", code=code)
        return JfsFile(self, path, run)

    def findings(self) -> list[Finding]:
        return []
