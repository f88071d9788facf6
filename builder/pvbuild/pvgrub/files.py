"""GRUB's file layer: `grub_open` + `grub_read` as PV-GRUB runs them (disk_io.c, gunzip.c).

A file name is `(device)/abs/path`, `/abs/path` on the current root, or a blocklist (`[OFFSET]+LENGTH,...`);
anything else is Error 1. The device is opened (disk.py), every filesystem driver of the PV build is tried in
GRUB's order (`attempt_mount`), the path is resolved by the driver, and a file that starts with the gzip
magic is transparently gunzipped (`gunzip_test_header`), whatever it is: menu.lst, kernel or initrd.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from pvbuild.pvgrub.blockio import SECTOR, Disk, Volume
from pvbuild.pvgrub.disk import Device, open_volume, parse_device, parse_maxint
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.findings import Finding, error
from pvbuild.pvgrub.fs.base import Filesystem, FsIdentity
from pvbuild.pvgrub.profiles import Profile

# Our bound on one file held in memory (GRUB's own bound is the PV-GRUB domain's memory).
MAX_FILE = 200 * 1024 * 1024

# gunzip.c header flags.
_CONTINUATION, _EXTRA, _NAME, _COMMENT, _ENCRYPTED, _RESERVED = 0x02, 0x04, 0x08, 0x10, 0x20, 0xC0
_UNSUPPORTED = _CONTINUATION | _ENCRYPTED | _RESERVED


class EmulatorLimit(Exception):
    """PV-GRUB would read this, but the emulator cannot (yet): the verdict cannot be trusted past here."""

    def __init__(self, message: str, code: str = "fs-unsupported") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Opened:
    """A file GRUB read: where it came from and the bytes GRUB's reads returned (after gunzip)."""

    device: Device
    path: str
    data: bytes
    gzipped: bool
    fs: Filesystem | None
    problems: list[Finding] = field(default_factory=list)


def split_path(text: str) -> str:
    """A file name ends at the first blank (the filesystem drivers stop there)."""
    for i, ch in enumerate(text):
        if ch in " \t\n":
            return text[:i]
    return text


def gunzip(data: bytes, *, limit: int = MAX_FILE) -> tuple[bytes, bool]:
    """gunzip.c: (contents, was_gzip). Not gzip -> unchanged. A bad header -> Error 4, bad data -> Error 3.

    GRUB takes the size from the last 4 bytes of the file (ISIZE) and inflates the first member only; it does
    not check the CRC. Fewer bytes than ISIZE is bad data; more are never read.
    """
    if len(data) < 10 or data[:2] not in (b"\x1f\x8b", b"\x1f\x9e"):
        return data, False
    method, flags = data[2], data[3]
    if method != 8 or flags & _UNSUPPORTED:
        raise GrubError(Err.BAD_GZIP_HEADER, "unsupported gzip method or flags", code="gzip-bad-header")
    pos = 10
    if flags & _EXTRA:
        if pos + 2 > len(data):
            raise GrubError(Err.BAD_GZIP_HEADER, "truncated gzip extra field", code="gzip-bad-header")
        xlen = int.from_bytes(data[pos:pos + 2], "little")
        pos += 2 + xlen
    for flag in (_NAME, _COMMENT):
        if flags & flag:
            end = data.find(b"\0", pos)
            if end < 0:
                raise GrubError(Err.BAD_GZIP_HEADER, "unterminated gzip name/comment", code="gzip-bad-header")
            pos = end + 1
    if pos > len(data) - 8:
        raise GrubError(Err.BAD_GZIP_HEADER, "gzip file too short", code="gzip-bad-header")
    isize = int.from_bytes(data[-4:], "little")
    if isize > limit:
        raise GrubError(Err.WONT_FIT, f"gzip member claims {isize} bytes, more than the emulator's "
                                      f"{limit}-byte bound", code="file-too-large")
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data[pos:], isize) if isize else b""
    except zlib.error as e:
        raise GrubError(Err.BAD_GZIP_DATA, f"corrupt deflate data: {e}", code="gzip-bad-data") from e
    if len(out) < isize:
        raise GrubError(Err.BAD_GZIP_DATA, f"deflate data ends after {len(out)} of {isize} bytes",
                        code="gzip-bad-data")
    return out, True


class FileLayer:
    """Opens GRUB file names on the one disk, mounting each device at most once."""

    def __init__(self, disk: Disk, profile: Profile) -> None:
        self.disk = disk
        self.profile = profile
        self._mounts: dict[Device, Filesystem | GrubError | EmulatorLimit] = {}

    def mounted(self) -> list[Filesystem]:
        """Every filesystem this run mounted (for the findings their superblocks carry)."""
        return [fs for fs in self._mounts.values() if isinstance(fs, Filesystem)]

    # --- devices -------------------------------------------------------------------------------------
    def volume(self, device: Device) -> Volume:
        if device.is_network:
            # tftp_mount needs network_ready, which a disk-booted PV-GRUB never has; the other drivers then
            # read the network "drive", which get_diskinfo does not know: "Selected disk does not exist".
            raise GrubError(Err.NO_DISK, "no root device was set: the entry's root is still (nd), the "
                                         "network drive; add `root (hd0)` (or `(hd0,N)`) to the entry",
                            code="root-not-set")
        return open_volume(self.disk, device, gpt=self.profile.gpt)

    def mount(self, device: Device) -> Filesystem:
        """disk_io.c open_device: open the partition, then try each driver in the PV build's order."""
        cached = self._mounts.get(device)
        if cached is None:
            try:
                cached = self._mount(self.volume(device))
            except (GrubError, EmulatorLimit) as e:
                cached = e
            self._mounts[device] = cached
        if isinstance(cached, (GrubError, EmulatorLimit)):
            raise cached
        return cached

    def _mount(self, vol: Volume) -> Filesystem:
        """attempt_mount: the first driver of the PV build's fsys_table whose mount accepts the volume.

        The drivers pvbuild emulates (those with a reader module: fs/ext2.py for ext2fs, fs/NAME.py for the others)
        then read files; a volume another driver would take (ufs2, ffs, vstafs ...) is an emulator limit, said as
        such. A mount function whose read failed leaves GRUB's errnum set, and the device fails with that error
        rather than Error 17 (probe.py).
        """
        from pvbuild.pvgrub.fs import probe

        outcome = probe.grub_mount_sequence(vol, arch=self.profile.arch)
        fs: Filesystem | None = None
        if outcome.driver is not None:
            mount = probe.reader_mount(outcome.driver)
            if mount is None:
                raise EmulatorLimit(f"{vol.name} holds a filesystem PV-GRUB reads with its {outcome.driver} driver, "
                                    "which pvbuild's emulator does not implement yet: the verdict past this point "
                                    "is unknown (prove it with `pvbuild boot`)")
            fs = mount(vol, arch=self.profile.arch)
        if fs is not None:
            return fs
        ident = probe.identify(vol)
        if outcome.driver is None and outcome.errnum not in (0, Err.FSYS_MOUNT):
            # A driver's read failed and GRUB reports that error; still say what the volume holds.
            why = self._why_not_mounted(vol, ident)
            return_detail = outcome.detail or f"reading {vol.name} failed"
            if ident is not None:
                return_detail += f"; {why.detail}"
            raise GrubError(outcome.errnum, return_detail, code=why.code if ident is not None else None)
        raise self._why_not_mounted(vol, ident)

    def _why_not_mounted(self, vol: Volume, ident: FsIdentity | None) -> GrubError:
        from pvbuild.pvgrub.fs import probe, xfs

        where = vol.name
        if vol.part_type == 0xEE and not self.profile.gpt:
            return GrubError(Err.FSYS_MOUNT, f"{where} is the protective entry of a GPT disk: PV-GRUB "
                                             f"{self.profile.version} reads only MBR partition tables (GPT "
                                             f"needs 1.04+); use an MBR (msdos) label",
                             code="gpt-unsupported")
        if ident is None:
            if vol.start == 0 and vol.part_type is None and self.disk.read(510, 2) == b"\x55\xaa":
                return GrubError(Err.FSYS_MOUNT, f"{where} is the whole disk, which holds a partition table, not "
                                                 "a filesystem: name a partition, (hd0,0), and use the hd00 AKI",
                                 code="fs-unsupported")
            return GrubError(Err.FSYS_MOUNT, f"no filesystem PV-GRUB knows on {where}", code="fs-unsupported")
        kind = ident.fstype
        if kind in ("ext2", "ext3", "ext4") and vol.part_type not in (None, 0x83, 0xFD):
            return GrubError(Err.FSYS_MOUNT, f"{where} holds {kind} but its MBR partition type is "
                                             f"0x{vol.part_type:02x}: PV-GRUB's ext2 driver mounts only type "
                                             f"0x83 (Linux) or 0xFD (Linux RAID); set the type to 83",
                             code="partition-type-not-linux")
        if kind == "vfat" and vol.part_type not in (None, 0) and \
                (vol.part_type & ~probe.HIDDEN_SLICE_FLAG) not in probe.FAT_SLICE_TYPES:
            return GrubError(Err.FSYS_MOUNT, f"{where} holds FAT but its MBR partition type is "
                                             f"0x{vol.part_type:02x}: PV-GRUB's fat driver mounts only the FAT "
                                             f"types (fsys_fat.c:80-83: 0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e); "
                                             "set the type to 0c (FAT32 LBA)", code="partition-type-not-fat")
        if kind == "xfs":
            reason = xfs.refusal_reason(vol) or "this XFS superblock is not one PV-GRUB reads"
            return GrubError(Err.FSYS_MOUNT, f"{where}: {reason}", code="fs-unsupported")
        if kind == "btrfs":
            return GrubError(Err.FSYS_MOUNT, f"{where} holds btrfs: its driver is not built into PV-GRUB "
                                             f"(beta at best); put /boot on ext2/3/4 without 64bit",
                             code="fs-unsupported")
        advice = {
            "LVM2_member": "an LVM physical volume: PV-GRUB cannot read LVM; put /boot on a separate plain "
                           "partition (AWS: 'you need a separate boot partition outside of the LVM')",
            "crypto_LUKS": "a LUKS container: PV-GRUB cannot unlock it; keep /boot unencrypted",
            "swap": "swap space",
            "linux_raid_member": "an md RAID member with metadata PV-GRUB cannot assemble",
            "squashfs": "squashfs, which PV-GRUB cannot read",
        }.get(kind, f"{kind}, which PV-GRUB cannot read")
        return GrubError(Err.FSYS_MOUNT, f"{where} holds {advice}", code="fs-unsupported")

    # --- files ---------------------------------------------------------------------------------------
    def resolve(self, name: str, root: Device) -> tuple[Device, str]:
        """setup_part: the device a name refers to and the rest of the name."""
        if name.startswith("("):
            return parse_device(name)
        return root, name

    def open(self, name: str, root: Device, *, decompress: bool = True, limit: int = MAX_FILE) -> Opened:
        """grub_open + read to the end (mini-os load_file reads whole files)."""
        device, rest = self.resolve(name, root)
        if not rest.startswith("/"):
            return self._open_blocklist(device, rest, decompress, limit)
        fs = self.mount(device)
        path = split_path(rest)
        f = fs.open(path)
        if f.size > limit:
            raise GrubError(Err.WONT_FIT, f"{device}{path} is {f.size} bytes, more than the emulator's "
                                          f"{limit}-byte bound", code="file-too-large")
        raw = f.read(0, f.size)
        data, gz = gunzip(raw, limit=limit) if decompress else (raw, False)
        problems = []
        misread = getattr(f, "misread_blocks", ())
        if misread:
            problems.append(error("file-sparse", f"{device}{path} has holes (all-zero blocks left unallocated, as "
                                                 "`mkfs -d` does): PV-GRUB reads block(s) "
                                                 f"{', '.join(map(str, misread[:8]))}"
                                                 " from the next physical block instead of zeros, so what it loads "
                                                 "is corrupt; write boot files without holes"))
        for feature in getattr(f, "unsupported", ()):
            problems.append(error("fs-feature-unsupported", f"{device}{path}: read through {feature}, which "
                                                            "PV-GRUB misreads"))
        return Opened(device, path, data, gz, fs, problems)

    def exists(self, name: str, root: Device) -> bool:
        try:
            device, rest = self.resolve(name, root)
            if not rest.startswith("/"):
                return False
            self.mount(device).open(split_path(rest))
            return True
        except (GrubError, EmulatorLimit):
            return False

    def _open_blocklist(self, device: Device, text: str, decompress: bool, limit: int) -> Opened:
        """disk_io.c grub_open's blocklist branch: `[OFFSET]+LENGTH[,[OFFSET]+LENGTH...]` in sectors."""
        spans: list[tuple[int, int]] = []
        pos = 0
        total = 0
        while len(spans) < 64:
            parsed = parse_maxint(text, pos)
            start, pos = parsed if parsed else (0, pos)
            if text[pos:pos + 1] != "+":
                # Not a blocklist: a relative file name lands here and is "Error 1".
                raise GrubError(Err.BAD_FILENAME, f"{text.split(maxsplit=1)[0] if text.split() else text!r} is neither "
                                                  "an absolute path (/boot/...) nor a blocklist",
                                code="bad-filename")
            pos += 1
            parsed = parse_maxint(text, pos)
            if parsed is None or parsed[0] == 0 or text[parsed[1]:parsed[1] + 1] not in ("", ",", "/", " "):
                raise GrubError(Err.BAD_FILENAME, f"bad blocklist {text.split(maxsplit=1)[0]!r}", code="bad-filename")
            length, pos = parsed
            spans.append((start, length))
            total += length * SECTOR
            if text[pos:pos + 1] != ",":
                break
            pos += 1
        if total > limit:
            raise GrubError(Err.WONT_FIT, "blocklist larger than the emulator's bound", code="file-too-large")
        vol = self.volume(device)
        data = b"".join(vol.read(s * SECTOR, n * SECTOR) for s, n in spans)
        out, gz = gunzip(data, limit=limit) if decompress else (data, False)
        return Opened(device, text.split(maxsplit=1)[0] if text.split() else text, out, gz, None)
