"""PV-GRUB's ISO 9660 driver, GRUB 0.97 `stage2/fsys_iso9660.c` (structures from `stage2/iso9660.h`),
re-implemented to fail where it fails.

An emulator, not an ISO 9660 reader: line numbers ("fsys_iso9660.c:172") refer to the reference copy in
`reference/pv-grub-src/grub-0.97-with-xen-patches/stage2/`. What it models:

- `iso9660_devread` (l.75-104): the driver's own read path, in 2 KiB sectors shifted to the disk's 512-byte
  sectors (`shl` by ISO_SECTOR_BITS - log2(512) = 2 on a 32-bit int, so sector numbers of 2^29 and more wrap);
  a negative sector (an extent of 2^31 or more) is Error 24; there is no partition check, only rawread's: a
  sector past the end of the disk is Error 18 (disk_io.c rawread l.181-185).
- `iso9660_mount` (l.107-140): whole disk only (`current_partition == 0xFFFFFF`; the BSD sub-partition case
  does not arise on a Xen disk); the first of sectors 16-31 that is a primary volume descriptor ("\\x01CD001")
  is kept at FSYS_BUF+2048; a failed read stops the scan. Only the *first* session and only the primary volume
  descriptor are read: Joliet's supplementary descriptor is ignored, so on a Joliet-only image names are the
  ISO 9660 ones (upper case, 8.3 on level 1). `fsmax` is set to volume_space_size (a count of 2 KiB blocks,
  not bytes), but grub_open (disk_io.c:1566) resets it to MAXINT after mounting, so that bug never shows.
- `iso9660_dir` (l.143-412): a path component is compared byte for byte (case-sensitive) with the record's
  name, after ";1" (only version 1) and then one trailing "." are cut (l.195-200); "." and ".." records are
  skipped (l.189-194). Rock Ridge (l.202-350): NM gives the name, PX the type (anything other than a regular
  file or a directory is ISO_OTHER); parsing stops once NM and PX were both seen (or an RR entry's flags say
  they are absent); CE continues in a sector read into RRCONT_BUF (a failed read there is ignored, l.345).
  Only the last NM seen before the parse stops counts: a name too long for its record, split over NM entries,
  is cut to one piece -- the last with genisoimage, which writes NM before PX, the first with xorriso, which
  writes PX first. Rock Ridge symlinks are *not* supported (the SL case is `#if 0`, l.258-319): a symlink is
  ISO_OTHER, so opening it or walking through it is Error 2; nor is directory relocation (CL/RE): below a
  directory genisoimage moved to /rr_moved (deeper than 8 levels) GRUB finds nothing, Error 15. Without Rock
  Ridge, /boot/grub/menu.lst is not found on an image whose names are upper case (Error 15). A component found
  as a file when a directory is needed, or a directory (or other) opened as a file, is Error 2; a missing name
  Error 15; a directory sector that cannot be read Error 16 (l.174-178).
- GRUB bugs kept: the record walk (l.182-183) stops only at a zero length byte, not at the end of the 2 KiB
  DIRREC buffer, so a sector filled to its last byte runs on into RRCONT_BUF and NAME_BUF (whatever they hold
  from an earlier continuation area or from the drivers probed before); `rr_len` is unsigned, so a record too
  short for its name parses Rock Ridge entries out of whatever follows; an entry of length 0 loops forever;
  a name longer than the rest of the path still matches by its prefix only when the lengths agree.
- `iso9660_read` (l.414-447): file_start 0 reads nothing (an empty count); sector by sector otherwise; a failed
  read returns 0 for the whole call.

FSYS_BUF is modelled byte for byte (vol_sector at 0, file_start after it -- 8 or 4 bytes in, by the arch's
`unsigned long` --, PRIMDESC at 2048, DIRREC at 4096, RRCONT_BUF at 6144, NAME_BUF at 8192; the rest as the
mount functions tried before iso9660 left it), so stale bytes are read exactly when GRUB reads them. Reads past
FSYS_BUF give Error 16 with code `fs-corrupt` ("undefined"); loops that would never end code `fs-hang`.

Errors: 15 (`file-not-found`), 2 (`bad-file-type`), 16 (`fs-corrupt`), 24/18 reads outside the disk.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator

from pvbuild.pvgrub.blockio import SECTOR, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs.base import (
    DIR_MAX_ENTRIES,
    S_IFDIR,
    S_IFLNK,
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
    Hang,
    Undefined,
    emulation_error,
    grub_path,
    grub_read_window,
    i32,
    isspace,
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

__all__ = ["IsoFile", "IsoFilesystem", "mount"]

# --- iso9660.h constants ---
ISO_SECTOR_BITS = 11
ISO_SECTOR_SIZE = 1 << ISO_SECTOR_BITS
ISO_REGULAR, ISO_DIRECTORY, ISO_OTHER = 1, 2, 0
RR_FLAG_PX, RR_FLAG_NM = 0x01, 0x08
POSIX_S_IFMT, POSIX_S_IFREG, POSIX_S_IFDIR = 0xF000, 0x8000, 0x4000
ISO_VD_PRIMARY = 1
ISO_STANDARD_ID = b"CD001"
MAXINT = 0x7FFFFFFF  # shared.h:55

# fsys_iso9660.c:49-56: where the driver keeps its buffers in FSYS_BUF
PRIMDESC, DIRREC, RRCONT_BUF, NAME_BUF = 2048, 4096, 6144, 8192
ROOT_RECORD = PRIMDESC + 156  # offsetof(struct iso_primary_descriptor, root_directory_record)
DR_HEAD = 33  # sizeof(struct iso_directory_record) - sizeof(idr->name) (packed: 34 - 1)
SECTOR_SHIFT = ISO_SECTOR_BITS - 9  # buf_geom.sector_size is 512 on a Xen block device
STEP_LIMIT = 2_000_000
RR_SIG = {b"RR": 0x5252, b"NM": 0x4D4E, b"PX": 0x5850, b"CE": 0x4543, b"SL": 0x4C53}


class _Run:
    """The driver's globals for one operation (FSYS_BUF, filepos/filemax, GRUB's sticky errnum)."""

    def __init__(self, vol: Volume, fsys_buf: bytes, arch: str) -> None:
        self.vol = vol
        self.mem = bytearray(fsys_buf[:FSYS_BUFLEN].ljust(FSYS_BUFLEN, b"\0"))
        self.inode = 4 if arch == "i386" else 8  # sizeof(struct iso_sb_info): an unsigned long
        self.disk_sectors = vol.disk.size // SECTOR
        self.part_start = vol.start // SECTOR
        self.errnum = 0
        self.detail = ""
        self.code: str | None = None
        self.filepos = 0
        self.filemax = 0
        self.steps = 0
        self.step_limit = STEP_LIMIT

    def clone(self) -> _Run:
        new = copy.copy(self)
        new.mem = bytearray(self.mem)
        return new

    def fail(self, number: int, detail: str, code: str | None = None) -> None:
        self.errnum = int(number)
        self.detail = detail
        self.code = code

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.step_limit:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: more than {self.step_limit} steps of GRUB's "
                                              "iso9660 driver without an answer", code="fs-emulator-limit")

    # --- FSYS_BUF ---
    def rd(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > FSYS_BUFLEN:
            raise Undefined(f"GRUB would read {n} bytes at offset {off} of its 32 KiB FSYS_BUF, outside it")
        return bytes(self.mem[off:off + n])

    def b(self, off: int) -> int:
        return self.rd(off, 1)[0]

    def m32(self, off: int) -> int:
        return _u32(self.rd(off, 4), 0)

    @property
    def file_start(self) -> int:
        return self.m32(self.inode)

    @file_start.setter
    def file_start(self, value: int) -> None:
        self.mem[self.inode:self.inode + 4] = (value & M32).to_bytes(4, "little")

    # --- iso9660_devread (l.75-104) + rawread's guards ---
    def devread(self, sector: int, byte_offset: int, byte_len: int) -> bytes | None:
        """The bytes read, or None when GRUB's read fails (errnum set) or is skipped (errnum already set)."""
        sector = i32(sector)
        if sector < 0:  # l.83-87
            self.fail(Err.OUTSIDE_PART, f"iso9660 read of 2 KiB sector {sector & M32} (negative as a C int)")
            return None
        if byte_len <= 0:
            return b""
        sector = i32(sector << SECTOR_SHIFT)  # l.91-94: shl on the 32-bit int
        sector = i32(sector + (byte_offset >> 9))
        byte_offset &= SECTOR - 1
        if self.errnum:  # rawread: while (byte_len > 0 && !errnum) ... does nothing
            return None
        first = (self.part_start + sector) & M32  # rawread's unsigned int sector
        last = first + ((byte_offset + byte_len - 1) >> 9)
        if last >= self.disk_sectors:
            self.fail(Err.GEOM, f"sector {max(first, self.disk_sectors)} is past the end of the disk "
                                f"({self.disk_sectors} sectors)")
            return None
        addr = first * SECTOR + byte_offset
        try:
            if byte_len == ISO_SECTOR_SIZE and addr % ISO_SECTOR_SIZE == 0:
                return self.vol.disk.read(addr, byte_len) if self.vol.start else \
                    self.vol.read_block(addr // ISO_SECTOR_SIZE, ISO_SECTOR_SIZE)
            return self.vol.disk.read(addr, byte_len)
        except GrubError as e:
            self.fail(e.number, e.detail)
            return None

    def load(self, where: int, sector: int) -> bool:
        data = self.devread(sector, 0, ISO_SECTOR_SIZE)
        if data is None:
            return False
        self.mem[where:where + ISO_SECTOR_SIZE] = data
        return True

    # --- iso9660_dir (l.143-412) ---
    def rock_ridge(self, idr: int, name: int, name_len: int, file_type: int) -> tuple[int, int, int]:
        """l.202-350: the name (an FSYS_BUF offset), its length and the file type after the Rock Ridge entries."""
        rr_len = (self.b(idr) - self.b(idr + 32) - DR_HEAD) & M32  # l.205-207, unsigned
        rr_ptr = idr + self.b(idr + 32) + DR_HEAD
        if rr_ptr & 1:  # l.211-212: FSYS_BUF is aligned, so the pointer's parity is the offset's
            rr_ptr += 1
            rr_len = (rr_len - 1) & M32
        ce_ptr: int | None = None
        rr_flag = RR_FLAG_NM | RR_FLAG_PX
        seen: set[tuple[object, ...]] = set()
        while rr_len >= 4:
            self.step()
            sig = _u16(self.rd(rr_ptr, 2), 0)
            length = self.b(rr_ptr + 2)
            if self.b(rr_ptr + 3) == 1:  # l.218: other versions are skipped (printed only under `debug`)
                if sig == RR_SIG[b"RR"]:
                    if length >= 4 + 1:
                        rr_flag &= self.b(rr_ptr + 4)
                elif sig == RR_SIG[b"NM"]:
                    name = rr_ptr + 5
                    name_len = (length - 5) & M32  # l.239: an NM shorter than 5 bytes gives a huge length
                    rr_flag &= ~RR_FLAG_NM
                elif sig == RR_SIG[b"PX"]:
                    if length >= 4 + 32:
                        mode = self.m32(rr_ptr + 4)
                        file_type = (ISO_REGULAR if mode & POSIX_S_IFMT == POSIX_S_IFREG
                                     else ISO_DIRECTORY if mode & POSIX_S_IFMT == POSIX_S_IFDIR else ISO_OTHER)
                        rr_flag &= ~RR_FLAG_PX
                elif sig == RR_SIG[b"CE"] and length >= 4 + 24:
                    ce_ptr = rr_ptr
                # SL (symlinks) is `#if 0` in GRUB (l.258-319): ignored like any other entry
            if not rr_flag:  # l.324-328
                break
            if length == 0:
                raise Hang(f"a Rock Ridge entry of length 0 in the directory record at FSYS_BUF+{idr}: GRUB's "
                           "parse (l.216-350) never moves on")
            rr_len = (rr_len - length) & M32
            rr_ptr += length
            if rr_len < 4 and ce_ptr is not None:  # l.332-349
                if RRCONT_BUF <= name < RRCONT_BUF + ISO_SECTOR_SIZE:
                    if NAME_BUF + name_len > FSYS_BUFLEN:
                        raise Undefined(f"GRUB would copy a {name_len}-byte name past the end of FSYS_BUF")
                    self.mem[NAME_BUF:NAME_BUF + name_len] = self.rd(name, name_len)
                    name = NAME_BUF
                rr_ptr = RRCONT_BUF + self.m32(ce_ptr + 4 + 8)
                rr_len = self.m32(ce_ptr + 4 + 16)
                extent = self.m32(ce_ptr + 4)
                key = (extent, rr_ptr, rr_len, rr_flag, name, name_len, file_type,
                       hashlib.blake2b(self.mem, digest_size=16).digest())
                if key in seen:
                    raise Hang(f"the Rock Ridge continuation chain returns to sector {extent}: GRUB's parse never "
                               "ends")
                seen.add(key)
                if not self.load(RRCONT_BUF, extent):
                    self.errnum, self.detail, self.code = 0, "", None  # l.345: "this is not fatal"
                    break
                ce_ptr = None
        return name, name_len, file_type

    def entry(self, idr: int) -> tuple[int, int, int] | None:
        """l.185-350 for the record at FSYS_BUF+idr: (name offset, name length, file type) as GRUB compares them,
        or None for the self and parent records (l.189-194)."""
        name = idr + DR_HEAD
        name_len = self.b(idr + 32)
        file_type = ISO_DIRECTORY if self.b(idr + 25) & 2 else ISO_REGULAR
        if name_len == 1 and self.b(name) in (0, 1):
            return None
        if name_len > 2 and self.rd(name + name_len - 2, 2) == b";1":  # l.195-200
            name_len -= 2
            if name_len > 1 and self.b(name + name_len - 1) == 0x2E:
                name_len -= 1
        return self.rock_ridge(idr, name, name_len, file_type)

    def memcmp(self, name: int, want: bytes) -> bool:
        """l.354 `!memcmp(name, dirname, pathlen)`, reading FSYS_BUF up to the first difference."""
        return all(self.b(name + k) == c for k, c in enumerate(want))

    def iso9660_dir(self, path: bytes) -> bool:
        dirname = path + b"\0"
        pos = 0
        idr = ROOT_RECORD
        self.file_start = 0
        while True:  # do { ... } while (*dirname == '/') (l.158-409)
            while dirname[pos] == 0x2F:
                pos += 1
            pathlen = 0
            while dirname[pos + pathlen] and not isspace(dirname[pos + pathlen]) and dirname[pos + pathlen] != 0x2F:
                pathlen += 1
            component = dirname[pos:pos + pathlen]
            term = dirname[pos + pathlen]
            size = i32(self.m32(idr + 10))
            extent = self.m32(idr + 2)
            found = False
            while size > 0 and not found:  # l.172-398
                self.step()
                if not self.load(DIRREC, extent):
                    why = self.detail or "read failed"
                    self.fail(Err.FSYS_CORRUPT, f"directory sector {extent} cannot be read ({why})")
                    return False
                extent = (extent + 1) & M32
                idr = DIRREC
                while self.b(idr) > 0:  # l.182-183: no check against the end of DIRREC
                    self.step()
                    entry = self.entry(idr)
                    if entry is None:
                        idr += self.b(idr)
                        continue
                    name, name_len, file_type = entry
                    self.filemax = MAXINT  # l.352
                    if name_len >= pathlen and self.memcmp(name, component) and pathlen == name_len:
                        if term == 0x2F:  # l.364-371
                            if file_type != ISO_DIRECTORY:
                                self.fail(Err.BAD_FILETYPE, f"{_show(component)} is not a directory",
                                          code="bad-file-type")
                                return False
                            found = True
                            break
                        if file_type != ISO_REGULAR:  # l.373-377
                            what = "a directory" if file_type == ISO_DIRECTORY else \
                                "neither a regular file nor a directory (a Rock Ridge symlink or device, which " \
                                "GRUB does not follow)"
                            self.fail(Err.BAD_FILETYPE, f"{_show(component)} is {what}", code="bad-file-type")
                            return False
                        self.file_start = self.m32(idr + 2)  # l.378-381
                        self.filepos = 0
                        self.filemax = i32(self.m32(idr + 10))
                        return True
                    idr += self.b(idr)
                if not found:
                    size = i32(size - ISO_SECTOR_SIZE)
            if not found:  # l.400-404 (print_possibilities is 0 when opening a file)
                self.fail(Err.FILE_NOT_FOUND, f"{_show(component)} not found", code="file-not-found")
                return False
            pos += pathlen  # next_dir_level (l.406-409)
            if dirname[pos] != 0x2F:
                return True

    # --- iso9660_read (l.414-447) ---
    def iso9660_read(self, length: int) -> tuple[int, bytes]:
        """(the count GRUB returns, the bytes it put in the buffer)."""
        file_start = self.file_start
        if file_start == 0:  # l.419-420
            return 0, b""
        out: list[bytes] = []
        ret = 0
        blkoffset = self.filepos & (ISO_SECTOR_SIZE - 1)
        sector = self.filepos >> ISO_SECTOR_BITS
        while length > 0:
            self.step()
            size = min(ISO_SECTOR_SIZE - blkoffset, length)
            x = (file_start + sector) & M32
            # Sectors below 2^29 map to one contiguous run of the disk (no negative int, no wrap of the shift):
            # read them at once; any failing sector makes the whole call return 0 (l.433-434) either way.
            if x < 1 << 29:
                more = min((1 << 29) - 1 - x, (length - size) // ISO_SECTOR_SIZE + 1, 1 << 13)
                size = min(length, size + more * ISO_SECTOR_SIZE)
            data = self.devread(x, blkoffset, size)
            if data is None:  # l.433-434
                return 0, b""
            out.append(data)
            length -= size
            ret += size
            self.filepos += size
            sector = self.filepos >> ISO_SECTOR_BITS
            blkoffset = 0
        return ret, b"".join(out)


def _grub_mount(vol: Volume, fsys_buf: bytes, arch: str) -> tuple[_Run, bool]:
    """iso9660_mount (l.107-140): (the driver state, whether it returned 1)."""
    from pvbuild.pvgrub.fs import probe

    run = _Run(vol, fsys_buf, arch)
    if not probe.is_whole_disk(vol):  # l.117-119
        return run, False
    for sector in range(16, 32):  # l.124-137
        if not run.load(PRIMDESC, sector):
            break
        if run.b(PRIMDESC) == ISO_VD_PRIMARY and run.rd(PRIMDESC + 1, 5) == ISO_STANDARD_ID:
            run.mem[0:run.inode] = sector.to_bytes(run.inode, "little")  # ISO_SUPER->vol_sector
            run.file_start = 0
            return run, True
    return run, False


def mount(vol: Volume, *, arch: str = "x86_64") -> IsoFilesystem | None:
    """GRUB's iso9660_mount: a filesystem exactly when the C function returns 1; a failed read raises GrubError."""
    from pvbuild.pvgrub.fs import probe

    buf = bytes(probe.fsys_buf_after_probe(vol, "iso9660", arch=arch))
    run, ok = _grub_mount(vol, buf, arch)
    if not ok:
        if run.errnum:
            raise GrubError(run.errnum, f"{vol.name}: iso9660 mount: {run.detail}", code="fs-corrupt")
        return None
    return IsoFilesystem(vol, run)


class IsoFile(File):
    """A file iso9660_dir found: file_start in GRUB's buffer, read through iso9660_read."""

    def __init__(self, fs: IsoFilesystem, path: str, run: _Run) -> None:
        self.fs = fs
        self.path = path
        self._run = run
        self.size = run.filemax if run.filemax >= 0 else 0

    def read(self, offset: int, length: int) -> bytes:
        """One grub_read (disk_io.c:1658): filepos and len clipped to filemax, then iso9660_read. A short count
        (file_start 0) is returned as is."""
        run = self._run.clone()
        run.step_limit = self.fs.step_limit
        filemax = run.filemax
        filepos, length = grub_read_window(filemax, offset, length)
        if length <= 0:
            return b""
        run.filepos = filepos
        count, data = run.iso9660_read(length)
        if run.errnum:
            raise GrubError(run.errnum, f"{self.fs.vol.name}{self.path}: {run.detail}", code="fs-corrupt")
        return data[:max(0, count)]


class IsoFilesystem(Filesystem):
    """A disk GRUB's iso9660_mount accepted, with the primary volume descriptor the mount left in FSYS_BUF.

    For listings (`pvbuild diff`) an "inode number" is the disk byte address of a file's directory record (the
    root's is the address of the primary volume descriptor's root record); names and types are GRUB's (parsed by
    the emulation itself); Rock Ridge symlinks, which GRUB cannot open, are decoded from SL for readlink.
    """

    grub_name = "iso9660"

    def __init__(self, vol: Volume, run: _Run) -> None:
        from pvbuild.pvgrub.fs import probe

        self.vol = vol
        self._mounted = run
        self.step_limit = STEP_LIMIT
        ident = probe.identify(vol)
        self.identity = ident if ident is not None and ident.fstype == "iso9660" else FsIdentity("iso9660")
        vol_sector = int.from_bytes(run.mem[0:run.inode], "little")
        self._root_addr = vol_sector * ISO_SECTOR_SIZE + (ROOT_RECORD - PRIMDESC)

    def emulation_error(self, run: _Run, e: Undefined | Hang, path: str) -> GrubError:
        return emulation_error(self.vol.name, run.errnum, run.detail, e, path)

    def open(self, path: str) -> IsoFile:
        """iso9660_dir (fsys_iso9660.c:143) on an absolute path; the name ends at the first blank."""
        raw = grub_path(path)
        run = self._mounted.clone()
        run.step_limit = self.step_limit
        try:
            ok = run.iso9660_dir(raw)
        except (Undefined, Hang) as e:
            raise self.emulation_error(run, e, path) from None
        if run.errnum or not ok:
            raise GrubError(run.errnum or Err.FSYS_CORRUPT, f"{self.vol.name}{path}: {run.detail}",
                            code=run.code or "fs-corrupt")
        return IsoFile(self, path, run)

    # --- listings ---
    def _disk(self, addr: int, n: int) -> bytes:
        try:
            return self.vol.disk.read(addr, n)
        except GrubError as e:
            raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: {e.detail}", code="fs-corrupt") from None

    def _grub_entry(self, run: _Run, idr: int, addr: int) -> tuple[bytes, int] | None:
        """GRUB's name and file type for the record at FSYS_BUF+idr (disk address `addr`), as l.185-350 give them."""
        try:
            entry = run.entry(idr)
            if entry is None:
                return None
            name, name_len, file_type = entry
            return run.rd(name, name_len), file_type
        except (Undefined, Hang) as e:
            raise self.emulation_error(run, e, f" (directory record at byte {addr})") from None

    def _grub_record(self, addr: int) -> tuple[bytes, int, int, int]:
        """(name, GRUB's file type, extent, size) of the record at disk address `addr`, its sector read into
        DIRREC of a copy of the mounted state."""
        run = self._mounted.clone()
        run.step_limit = self.step_limit
        if not run.load(DIRREC, addr // ISO_SECTOR_SIZE):
            raise GrubError(run.errnum or Err.FSYS_CORRUPT, f"{self.vol.name}: {run.detail}", code="fs-corrupt")
        idr = DIRREC + addr % ISO_SECTOR_SIZE
        got = self._grub_entry(run, idr, addr)
        name, file_type = got if got is not None else (b"", ISO_DIRECTORY)
        return name, file_type, run.m32(idr + 2), run.m32(idr + 10)

    def _posix(self, addr: int) -> tuple[int | None, int, int, int, bytes | None]:
        """(PX mode, nlink, uid, gid, SL target) of a record, read from its system use area (and the CE areas
        it chains, at most 8) without GRUB's early stop: attributes for listings only."""
        head = self._disk(addr, 34)
        length, nlen = head[0], head[32]
        rec = self._disk(addr, length) if length >= DR_HEAD + nlen else b""
        area = rec[DR_HEAD + nlen + ((DR_HEAD + nlen + addr) & 1):]
        mode: int | None = None
        nlink, uid, gid = 1, 0, 0
        sl = bytearray()
        for _hop in range(8):
            i = 0
            ce: tuple[int, int, int] | None = None
            while i + 4 <= len(area):
                sig, ln, ver = area[i:i + 2], area[i + 2], area[i + 3]
                if ln < 4 or i + ln > len(area):
                    break
                body = area[i + 4:i + ln]
                if ver == 1:
                    if sig == b"PX" and len(body) >= 32:
                        mode, nlink, uid, gid = _u32(body, 0), _u32(body, 8), _u32(body, 16), _u32(body, 24)
                    elif sig == b"SL" and body:
                        sl += body[1:]
                    elif sig == b"CE" and len(body) >= 24:
                        ce = (_u32(body, 0), _u32(body, 8), _u32(body, 16))
                i += ln
            if ce is None:
                break
            ext, off, size = ce
            area = self._disk(ext * ISO_SECTOR_SIZE + off, min(size, ISO_SECTOR_SIZE))
        link = _sl_target(bytes(sl)) if mode is not None and mode & POSIX_S_IFMT == S_IFLNK else None
        return mode, nlink, uid, gid, link

    @property
    def root_ino(self) -> int:
        return self._root_addr

    def stat(self, ino: int) -> Inode:
        _, file_type, _, size = self._grub_record(ino)
        mode, nlink, uid, gid, _ = self._posix(ino)
        if file_type == ISO_DIRECTORY:
            kind = S_IFDIR
        elif file_type == ISO_REGULAR:
            kind = S_IFREG
        else:
            kind = (mode or 0) & POSIX_S_IFMT
        perm = (mode & 0o7777) if mode is not None else (0o555 if kind == S_IFDIR else 0o444)
        return Inode(ino=ino, mode=kind | perm, size=size, uid=uid, gid=gid, mtime=0, nlink=nlink)

    def listdir(self, ino: int) -> list[DirEntry]:
        """The records of a directory in on-disk order, sector by sector as iso9660_dir scans them (l.172-398),
        with the names GRUB compares (the last Rock Ridge NM it reads, else the ISO name without ";1"), without
        the self and parent records. Records GRUB would read past the end of a sector (l.182-183) have no disk
        address and are not listed."""
        _, file_type, extent, size32 = self._grub_record(ino)
        if file_type != ISO_DIRECTORY:
            raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: record at byte {ino} is not a directory",
                            code="bad-file-type")
        out: list[DirEntry] = []
        size = i32(size32)
        while size > 0:
            run = self._mounted.clone()
            run.step_limit = self.step_limit
            if not run.load(DIRREC, extent):
                raise GrubError(run.errnum or Err.FSYS_CORRUPT, f"{self.vol.name}: directory sector {extent}: "
                                f"{run.detail}", code="fs-corrupt")
            idr = DIRREC
            while idr + DR_HEAD <= DIRREC + ISO_SECTOR_SIZE and run.mem[idr] > 0:
                addr = extent * ISO_SECTOR_SIZE + idr - DIRREC
                got = self._grub_entry(run, idr, addr)
                if got is not None:
                    out.append(DirEntry(got[0], addr))
                    if len(out) > DIR_MAX_ENTRIES:
                        raise GrubError(Err.FSYS_CORRUPT, f"{self.vol.name}: more than {DIR_MAX_ENTRIES} names in "
                                                          "one directory", code="fs-emulator-limit")
                idr += run.mem[idr]
            extent = (extent + 1) & M32
            size -= ISO_SECTOR_SIZE
        return out

    def content(self, ino: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The file's single extent as Linux reads it (the bytes iso9660_read reads too, l.414-447)."""
        _, file_type, extent, size = self._grub_record(ino)
        if file_type != ISO_REGULAR:
            raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: record at byte {ino} is not a regular file",
                            code="bad-file-type")
        for pos in range(0, size, chunk):
            yield self._disk(extent * ISO_SECTOR_SIZE + pos, min(chunk, size - pos))

    def readlink(self, ino: int) -> bytes:
        """A Rock Ridge symlink's target decoded from its SL entries (GRUB itself never reads them)."""
        link = self._posix(ino)[4]
        if link is None:
            raise GrubError(Err.BAD_FILETYPE, f"{self.vol.name}: record at byte {ino} is not a Rock Ridge symlink",
                            code="bad-file-type")
        return link


def _sl_target(sl: bytes) -> bytes:
    """The target of Rock Ridge SL components (RRIP 4.1.3): flags 2 ".", 4 "..", 8 "/", 1 continued."""
    out = bytearray()
    i = 0
    prev_continued = True
    while i + 2 <= len(sl):
        flags, ln = sl[i], sl[i + 1]
        text = sl[i + 2:i + 2 + ln]
        if not prev_continued and out and not out.endswith(b"/"):
            out += b"/"
        if flags & 8:
            out = bytearray(b"/")
        elif flags & 4:
            out += b".."
        elif flags & 2:
            out += b"."
        else:
            out += text
        prev_continued = bool(flags & 1)
        i += 2 + ln
    return bytes(out)
