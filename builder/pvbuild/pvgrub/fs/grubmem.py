"""Pieces shared by the emulated GRUB drivers that model GRUB's memory byte for byte (reiserfs.py, jfs.py).

- `Undefined` / `Hang`: the C code would act on memory nothing defined (stack garbage, bytes past FSYS_BUF) or
  would never return; the readers turn them into GrubError 16 with codes `fs-corrupt` / `fs-hang`.
- `DevRead`: disk_io.c devread (l.304-339) + rawread's guards (l.155-183) with GRUB's sticky `errnum`: a read
  outside the partition is Error 24 (checked even when errnum is already set), a sector past the disk Error 18,
  and once errnum is set every read does nothing and reports failure.
"""

from __future__ import annotations

from pvbuild.pvgrub.blockio import MAX_READ, SECTOR, Volume
from pvbuild.pvgrub.errors import Err, GrubError

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
FSYS_BUFLEN = 0x8000  # shared.h:91


class Undefined(Exception):
    """GRUB would use memory nothing wrote (stack garbage, bytes past FSYS_BUF) or write outside its buffers."""


class Hang(Exception):
    """GRUB would not come back (a loop that never ends, or not within any sensible time)."""


class StackBuf:
    """A stack buffer of GRUB's (a driver's linkbuf, or the caller's path): contents and which bytes were ever
    written, so that reading a byte nothing wrote is `Undefined` rather than a guess."""

    def __init__(self, size: int, name: str) -> None:
        self.data = bytearray(size)
        self.known = bytearray(size)
        self.name = name

    def put(self, i: int, c: int) -> None:
        if not 0 <= i < len(self.data):
            raise Undefined(f"GRUB would write byte {i} of its {len(self.data)}-byte {self.name}")
        self.data[i] = c
        self.known[i] = 1

    def get(self, i: int) -> int:
        if not 0 <= i < len(self.data) or not self.known[i]:
            raise Undefined(f"GRUB would read byte {i} of its {self.name}, which nothing wrote")
        return self.data[i]



def store(out: bytearray | StackBuf, at: int, data: bytes, reader: str) -> None:
    """Copy what a driver's read got into the caller's buffer at `at` (a StackBuf also records the bytes as
    written); writing past a plain buffer's end is `Undefined` (`reader` names the C function)."""
    if isinstance(out, StackBuf):
        for k, c in enumerate(data):
            out.put(at + k, c)
        return
    if at < 0 or at + len(data) > len(out):
        raise Undefined(f"GRUB's {reader} would write past the end of the caller's buffer")
    out[at:at + len(data)] = data


def grub_read_window(filemax: int, offset: int, length: int) -> tuple[int, int]:
    """grub_read's clipping (disk_io.c:1658-1670): (filepos, length) for a read of `length` bytes at `offset` of a
    file of `filemax` bytes; filepos past the end sits at the end, and a length of -1 or past the end reads to it
    (length <= 0: nothing to read)."""
    filepos = offset if 0 <= offset <= filemax else filemax
    if length < 0 or length > filemax - filepos:
        length = filemax - filepos
    return filepos, length


def grub_path(path: str) -> bytes:
    """The bytes of an absolute path as GRUB's *_dir gets them (a NUL ends the string); a relative path is
    Error 1 (ERR_BAD_FILENAME), which GRUB's file layer gives before any driver runs."""
    if not path.startswith("/"):
        raise GrubError(Err.BAD_FILENAME, f"{path!r} is not an absolute path", code="bad-filename")
    return path.encode("utf-8", "surrogateescape").split(b"\0", 1)[0]

def emulation_error(volume: str, errnum: int, detail: str, e: Undefined | Hang, path: str) -> GrubError:
    """The error for a walk GRUB would never finish (`fs-hang`) or that acts on memory it never filled
    (`fs-corrupt`); a GRUB error already set on the way (`errnum`, `detail`) is the one GRUB reports."""
    kind = "fs-hang" if isinstance(e, Hang) else "fs-corrupt"
    what = "PV-GRUB would loop forever or hang" if isinstance(e, Hang) else "what PV-GRUB does next is undefined"
    if errnum:
        return GrubError(errnum, f"{volume}{path}: {detail}; then {e} ({what})", code=kind)
    return GrubError(Err.FSYS_CORRUPT, f"{volume}{path}: {e} ({what})", code=kind)


def show(name: bytes) -> str:
    """A name for a message: GRUB's bytes, cut at 80 characters (a runaway symlink copy fills 4 KiB)."""
    text = name.decode("latin-1")
    return repr(text if len(text) <= 80 else text[:80] + "...")


def u16(b: bytes | bytearray, o: int) -> int:
    return int.from_bytes(b[o:o + 2], "little")


def u32(b: bytes | bytearray, o: int) -> int:
    return int.from_bytes(b[o:o + 4], "little")


def i32(v: int) -> int:
    """A C `int` from the low 32 bits of v."""
    v &= M32
    return v - (1 << 32) if v & 0x80000000 else v


def s8(v: int) -> int:
    return v - 256 if v & 0x80 else v


def isspace(c: int) -> bool:
    """char_io.c grub_isspace (shared.h:369 maps isspace to it): space, tab, CR, LF."""
    return c in (0x20, 0x09, 0x0D, 0x0A)


class DevRead:
    """GRUB's devread with its global errnum, for one operation on one partition."""

    def __init__(self, vol: Volume) -> None:
        self.vol = vol
        self.part_sectors = vol.length // SECTOR
        self.part_start = vol.start // SECTOR
        self.disk_sectors = vol.disk.size // SECTOR
        self.errnum = 0
        self.detail = ""
        self.code: str | None = None  # the finding code for errnum (None: a read failed, "fs-corrupt")

    def fail(self, number: int, detail: str, code: str | None = None) -> None:
        self.errnum = int(number)
        self.detail = detail
        self.code = code

    def __call__(self, sector: int, byte_offset: int, byte_len: int) -> bytes | None:
        """The bytes read, or None when GRUB's read fails or is skipped (errnum already set)."""
        sector &= M32  # devread (unsigned int sector, int byte_offset, int byte_len, ...)
        byte_offset = i32(byte_offset)
        byte_len = i32(byte_len)
        last = (sector + (i32(byte_offset + byte_len - 1) >> 9)) & M32
        if last >= self.part_sectors:
            self.fail(Err.OUTSIDE_PART, f"read of {byte_len} bytes at sector {sector} + {byte_offset} outside "
                                        f"{self.vol.name} ({self.part_sectors} sectors)")
            return None
        sector = (sector + (byte_offset >> 9)) & M32
        byte_offset &= SECTOR - 1
        if byte_len <= 0:
            return b""
        if self.errnum:
            return None
        if ((self.part_start + sector) & M32) >= self.disk_sectors:
            self.fail(Err.GEOM, f"sector {sector} of {self.vol.name} is past the end of the disk")
            return None
        addr = sector * SECTOR + byte_offset
        try:
            cache = 4096
            first = addr // cache
            if byte_len <= cache and (addr + byte_len - 1) // cache == first \
                    and (first + 1) * cache <= self.vol.length:
                blk = self.vol.read_block(first, cache)
                o = addr - first * cache
                return blk[o:o + byte_len]
            parts = []
            while byte_len > 0:  # blockio's MAX_READ bounds one read; GRUB's devread has no such limit
                n = min(byte_len, MAX_READ)
                parts.append(self.vol.read(addr, n))
                addr += n
                byte_len -= n
            return b"".join(parts)
        except GrubError as e:
            self.fail(e.number, e.detail)
            return None


def substring(s1: bytes, s1_at: int, read2: object) -> int:
    """char_io.c:1189 substring(s1, s2): 0 equal, -1 s1 is a prefix of s2, 1 otherwise. s1 is a NUL-terminated
    byte string starting at s1_at (bytes past its end count as NUL); read2(i) gives the i-th byte of s2."""
    assert callable(read2)
    i = 0
    while True:
        a = s1[s1_at + i] if s1_at + i < len(s1) else 0
        b = read2(i)
        if a != b:
            break
        if a == 0:
            return 0
        i += 1
    return -1 if a == 0 else 1
