"""What the Linux kernel unpacks from an initrd, without unpacking it (PVGRUB.md §6, "Initrd").

PV-GRUB hands the initrd to the kernel as a module; the kernel's `unpack_to_rootfs` (init/initramfs.c)
walks it as a concatenation: an uncompressed cpio archive starts with '0' at a 4-byte aligned offset, zero
bytes are padding and skipped, anything else must be a compressed member whose magic names a decompressor
(lib/decompress.c: gzip 1F 8B, bzip2 "BZ", lzma 5D 00, xz FD 37, lzo 89 4C, lz4 02 21, zstd 28 B5); a
decompressed member is itself a sequence of cpio archives and must end on a TRAILER!!! ("junk at the end of
compressed archive" otherwise). Debian 12 initrds are an uncompressed early cpio (CPU microcode) followed by
a zstd main archive.

`inspect_initrd` follows the same walk with bounded, streaming decompression, parsing only cpio headers
(newc 070701 and crc 070702, as the kernel accepts) and recording paths, never file contents. A member
that cannot be decompressed here (lzo) leaves `files` None (unknown) rather than raising.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pvbuild.pvgrub import decompress as dz

DEFAULT_LIMIT = 1024 * 1024 * 1024  # total decompressed bytes walked
MAX_ENTRIES = 1_000_000
MAX_NAME = 4096  # PATH_MAX: init/initramfs.c refuses longer names ("name too long")

# lib/decompress.c compressed_formats: the two bytes the kernel looks at, and the name it prints.
KERNEL_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x1f\x9e", "gzip"),
    (b"\x42\x5a", "bzip2"),
    (b"\x5d\x00", "lzma"),
    (b"\xfd\x37", "xz"),
    (b"\x89\x4c", "lzo"),
    (b"\x02\x21", "lz4"),
    (b"\x28\xb5", "zstd"),
)

_MODULE_RE = re.compile(r"(?:^|/)([^/]+)\.ko(?:\.(?:xz|zst|gz|bz2|lz4))?$")


@dataclass
class Segment:
    """One piece of the initrd: an uncompressed cpio run or one compressed member.

    `offset`/`length`: where it lies in the file (length None when unknown). `archives`: cpio archives
    (TRAILER!!!) seen in it. `entries`: cpio entries. `files`: None when its content is unknown. `error`:
    what the kernel would print ("Initramfs unpacking failed: <error>"), or why it could not be read here.
    """

    offset: int
    compression: str
    length: int | None = None
    uncompressed: int = 0
    archives: int = 0
    entries: int = 0
    files: list[str] | None = field(default_factory=list)
    error: str | None = None


@dataclass
class InitrdInfo:
    """What an initrd holds. `compression`: the main (last non-empty) archive's compression. `files`: every
    path the kernel would unpack (no leading "./" or "/"), or None when part of the initrd could not be read
    here (an lzo member, the size limit). `error`: the kernel's unpacking error, if any (it then boots with
    what was unpacked so far)."""

    compression: str
    segments: list[Segment]
    files: frozenset[str] | None
    error: str | None = None
    size: int = 0

    @property
    def modules(self) -> frozenset[str]:
        """Kernel module names present (file names without .ko and a compression suffix)."""
        if self.files is None:
            return frozenset()
        return frozenset(m.group(1) for p in self.files if (m := _MODULE_RE.search(p)))

    @property
    def module_paths(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for p in sorted(self.files or ()):
            m = _MODULE_RE.search(p)
            if m:
                out.setdefault(_norm_module(m.group(1)), p)
        return out

    @property
    def kernel_versions(self) -> frozenset[str]:
        """The <version> directories under lib/modules/ (or usr/lib/modules/)."""
        out = set()
        for p in self.files or ():
            m = re.match(r"(?:usr/)?lib/modules/([^/]+)/", p)
            if m:
                out.add(m.group(1))
        return frozenset(out)

    def module_status(self, name: str) -> bool | None:
        """True/False whether module `name` ("xen-blkfront" = "xen_blkfront") is in the initrd; None if unknown."""
        if self.files is None:
            return None
        return _norm_module(name) in {_norm_module(m) for m in self.modules}

    def has_module(self, name: str) -> bool:
        """Whether module `name` is in the initrd (False when unknown: check `files is None` first)."""
        return bool(self.module_status(name))


def _norm_module(name: str) -> str:
    name = name.rsplit("/", 1)[-1]
    name = re.sub(r"\.ko(\.(xz|zst|gz|bz2|lz4))?$", "", name)
    return name.replace("-", "_")


def kernel_compression(data: bytes | memoryview) -> str | None:
    """The decompressor Linux's decompress_method picks for these bytes (None: "invalid magic")."""
    head = bytes(data[:2])
    for magic, name in KERNEL_MAGICS:
        if head == magic:
            return name
    return None


class _CpioError(Exception):
    pass


class _BytesSource:
    """A read/skip source over uncompressed bytes (for cpio archives that are not compressed)."""

    def __init__(self, data: memoryview, pos: int) -> None:
        self.data = data
        self.pos = pos

    def read(self, n: int) -> bytes:
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += len(out)
        return out

    def skip(self, n: int) -> int:
        take = min(n, len(self.data) - self.pos)
        self.pos += take
        return take

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None


class _StreamSource:
    """read/skip/peek over a MemberReader."""

    def __init__(self, reader: dz.MemberReader) -> None:
        self.reader = reader
        self.pos = 0
        self._peeked: bytes = b""

    def read(self, n: int) -> bytes:
        head = self._peeked[:n]
        self._peeked = self._peeked[len(head):]
        out = head + self.reader.read(n - len(head)) if n > len(head) else head
        self.pos += len(out)
        return out

    def skip(self, n: int) -> int:
        head = min(n, len(self._peeked))
        self._peeked = self._peeked[head:]
        done = head + (self.reader.skip(n - head) if n > head else 0)
        self.pos += done
        return done

    def peek(self) -> int | None:
        if not self._peeked:
            self._peeked = self.reader.read(1)
        return self._peeked[0] if self._peeked else None


def _walk_cpio(src: _BytesSource | _StreamSource, seg: Segment, *, stop_at_nonzero: bool) -> None:
    """Parse cpio archives from `src` the way init/initramfs.c's state machine does.

    Archives follow each other, separated by zero padding. With `stop_at_nonzero` (the raw file), the walk
    returns at the first byte that is neither '0' nor zero padding (the caller then looks for a compressed
    member); inside a decompressed member such bytes are "junk within compressed archive".
    """
    assert seg.files is not None
    state_reset = True  # between archives

    def truncated(what: str) -> _CpioError:
        # Inside a compressed member, ending before the trailer leaves the state machine mid-archive.
        return _CpioError(f"truncated cpio {what}" if stop_at_nonzero else "junk at the end of compressed archive")

    while True:
        b = src.peek()
        if b is None:
            if not state_reset:
                raise _CpioError("truncated cpio archive" if stop_at_nonzero
                                 else "junk at the end of compressed archive")
            return
        if b == 0:
            # do_reset: eat zero padding.
            src.skip(1)
            continue
        if b != ord("0") or (src.pos & 3):
            if stop_at_nonzero:
                return
            raise _CpioError("broken padding" if b == ord("0") else "junk within compressed archive")
        state_reset = False
        while True:
            hdr = src.read(110)
            if len(hdr) < 110:
                raise truncated("header")
            magic = hdr[:6]
            if magic == b"070707":
                raise _CpioError("incorrect cpio method used: use -H newc option")
            if magic not in (b"070701", b"070702"):
                raise _CpioError("no cpio magic")
            try:
                fields = [int(hdr[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
            except ValueError as e:
                raise _CpioError("malformed cpio header (not hexadecimal)") from e
            filesize, namesize = fields[6], fields[11]
            if namesize == 0 or namesize > MAX_NAME:
                raise _CpioError("name too long" if namesize else "empty name")
            raw = src.read(namesize)
            if len(raw) < namesize:
                raise truncated("name")
            name = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            # header + name padded to 4 bytes (N_ALIGN), then the data padded to 4 bytes.
            pad = (-(110 + namesize)) & 3
            if src.skip(pad) < pad:
                raise truncated("name padding")
            if name == "TRAILER!!!":
                seg.archives += 1
                break
            seg.entries += 1
            if seg.entries > MAX_ENTRIES:
                raise _CpioError("too many cpio entries")
            path = name
            while path.startswith("./"):
                path = path[2:]
            path = path.lstrip("/")
            if path and path != ".":
                seg.files.append(path)
            total = filesize + ((-filesize) & 3)
            if src.skip(total) < total:
                raise truncated("file data")
        state_reset = True


def inspect_initrd(data: bytes | memoryview, *, limit: int = DEFAULT_LIMIT) -> InitrdInfo:
    """Walk an initrd as the kernel's unpack_to_rootfs does; bounded by `limit` decompressed bytes."""
    mv = memoryview(data).cast("B")
    segments: list[Segment] = []
    unknown = False
    kernel_error: str | None = None
    budget = limit
    pos = 0
    while pos < len(mv) and kernel_error is None:
        b = mv[pos]
        if b == 0:
            pos += 1
            continue
        if b == ord("0") and not (pos & 3):
            seg = Segment(pos, "none")
            src = _BytesSource(mv, pos)
            try:
                _walk_cpio(src, seg, stop_at_nonzero=True)
            except _CpioError as e:
                seg.error = str(e)
                kernel_error = str(e)
            seg.length = src.pos - pos
            seg.uncompressed = seg.length
            segments.append(seg)
            pos = max(src.pos, pos + 1)
            continue
        fmt = kernel_compression(mv[pos:])
        seg = Segment(pos, fmt or dz.detect(mv[pos:]))
        segments.append(seg)
        if fmt is None:
            seg.files = []
            seg.error = "invalid magic at start of compressed archive"
            if dz.lz4_container(mv[pos:]) == "frame":
                seg.error += " (lz4 frame format: the kernel reads only the legacy lz4 container, lz4 -l)"
            kernel_error = seg.error
            break
        if fmt == "lz4" and dz.lz4_container(mv[pos:]) != "legacy":
            seg.files = []
            seg.error = "decompressor failed (lz4: invalid header)"
            kernel_error = seg.error
            break
        if fmt == "lzo":
            seg.files = None
            seg.error = "lzo: cannot be decompressed here; content unknown"
            unknown = True
            break
        reader = dz.MemberReader(mv[pos:], fmt, budget)
        stream = _StreamSource(reader)
        try:
            _walk_cpio(stream, seg, stop_at_nonzero=False)
        except dz.OutputLimitExceeded as e:
            seg.error = f"not read to the end: {e}"
            seg.files = None
            unknown = True
            break
        except dz.DecompressError as e:
            seg.error = f"decompressor failed ({e})"
            kernel_error = seg.error
        except _CpioError as e:
            seg.error = str(e)
            kernel_error = str(e)
        seg.uncompressed = reader.total_out
        budget -= reader.total_out
        if reader.consumed is None:
            break
        seg.length = reader.consumed
        pos += reader.consumed
    files: frozenset[str] | None = None
    if not unknown:
        files = frozenset(p for s in segments for p in (s.files or ()))
    main = [s for s in segments if s.entries or s.compression != "none"]
    compression = main[-1].compression if main else (segments[-1].compression if segments else "none")
    return InitrdInfo(compression, segments, files, kernel_error, len(mv))
