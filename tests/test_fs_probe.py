"""The identity probe (blkid's view) and GRUB's driver probe (fsys_table) on volumes made by the real tools.

Every format is made with its own tool (mkfs.btrfs, mkreiserfs, mkfs.jfs, mkswap, cryptsetup, pvcreate,
mkfs.vfat, genisoimage, xorriso, mkfs.minix, mksquashfs, mkfs.xfs, mkfs.ext4) and `probe.identify` is compared
with `blkid -p -o export` on the same file. Where no tool can make the format here, the on-disk structure is
written by hand from its specification and blkid is still the judge: md RAID superblocks (mdadm needs the
kernel's md driver to create an array), an LVM2 label when no loop device is available for pvcreate, swap v0
(mkswap no longer writes it), reiserfs "JR" (a relocated-journal superblock), vstafs/ufs2/ffs (GRUB-only).

Images are cached under `tests.conftest.cache_root()/probe/<name>-<hash>.raw`, the hash covering the
command lines, the tool binaries (size and mtime) and RECIPE_VERSION.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from pvbuild.pvgrub.blockio import Disk, MemoryDisk, Volume
from pvbuild.pvgrub.errors import Err
from pvbuild.pvgrub.fs import probe
from pvbuild.pvgrub.fs.probe import GRUB_PROBE_ORDER, GrubDriver
from tests.conftest import cache_root
from tests.fixtures_xfs import blkid, build_xfs_image

RECIPE_VERSION = "2"
MIB = 1 << 20
FS_UUID = "5eed0000-1111-4222-8333-444455556666"
KEY = b"pvbuild-test-key-material-not-secret"


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def run(cmd: list[str], **kw: object) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()[:1000]}")


@dataclass(frozen=True)
class Recipe:
    size_mb: float
    tools: tuple[str, ...]
    build: Callable[[Path, Path], None]  # (image, scratch dir)


def _btrfs(img: Path, tmp: Path) -> None:
    run([tool("mkfs.btrfs"), "-q", "-f", "-L", "BTRLBL", "-U", FS_UUID, str(img)])


def _reiser36(img: Path, tmp: Path) -> None:
    run([tool("mkreiserfs"), "-q", "-f", "-l", "REISLBL", "-u", FS_UUID, str(img)])


def _reiser35(img: Path, tmp: Path) -> None:
    run([tool("mkreiserfs"), "-q", "-f", "--format", "3.5", str(img)])


def _reiser_jr(img: Path, tmp: Path) -> None:
    """A 3.6 superblock with the relocated-journal magic "ReIsEr3Fs" and a journal device number."""
    _reiser36(img, tmp)
    with open(img, "r+b") as f:
        f.seek(65536 + 16)
        f.write(struct.pack("<I", 0x0801))  # s_journal_dev
        f.seek(65536 + 52)
        f.write(b"ReIsEr3Fs\0")


def _jfs(img: Path, tmp: Path) -> None:
    run([tool("mkfs.jfs"), "-q", "-L", "JFSLBL", str(img)])


def _swap(img: Path, tmp: Path) -> None:
    run([tool("mkswap"), "-L", "SWAPLBL", "-U", FS_UUID, str(img)])


def _swap0(img: Path, tmp: Path) -> None:
    """Old-style swap (v0): a bitmap page ending in "SWAP-SPACE" (mkswap dropped v0 long ago)."""
    with open(img, "r+b") as f:
        f.write(b"\xfe" + b"\xff" * 100)
        f.seek(4096 - 10)
        f.write(b"SWAP-SPACE")


def _luks(version: int) -> Callable[[Path, Path], None]:
    def build(img: Path, tmp: Path) -> None:
        key = tmp / "key"
        key.write_bytes(KEY)
        cmd = [tool("cryptsetup"), "luksFormat", "-q", "--type", f"luks{version}", "--pbkdf", "pbkdf2",
               "--pbkdf-force-iterations", "1000", "--uuid", FS_UUID, "--key-file", str(key)]
        if version == 2:
            cmd += ["--label", "LUKSLBL"]
        else:
            cmd = [c for c in cmd if c not in ("--pbkdf", "pbkdf2")]
        run([*cmd, str(img)])
    return build


def _lvm_by_hand(img: Path) -> None:
    """An LVM2 PV label in sector 1 per the LVM2 on-disk format (label_header + pv_header, CRC over 20..511)."""
    sector = bytearray(512)
    pv_uuid = b"PvBuildTeStUuIdAbCdEfGhIjKlMnOpQ"  # what pvcreate --uuid below stores
    body = pv_uuid + struct.pack("<Q", os.path.getsize(img))
    body += struct.pack("<QQQQ", MIB, 0, 0, 0)  # data area list: one area, then the terminator
    body += struct.pack("<QQQQ", 4096, MIB - 4096, 0, 0)  # metadata area list
    sector[0:32] = b"LABELONE" + struct.pack("<QII", 1, 0, 32) + b"LVM2 001"
    sector[32:32 + len(body)] = body
    sector[16:20] = struct.pack("<I", probe.lvm_crc(bytes(sector[20:])))
    with open(img, "r+b") as f:
        f.seek(512)
        f.write(sector)


def _lvm(img: Path, tmp: Path) -> None:
    """pvcreate on a loop device when one can be set up (no device-mapper needed), else by hand."""
    losetup = shutil.which("losetup") or shutil.which("losetup", path="/usr/sbin:/sbin")
    pvcreate = shutil.which("pvcreate") or shutil.which("pvcreate", path="/usr/sbin:/sbin")
    if losetup and pvcreate:
        res = subprocess.run([losetup, "-f", "--show", str(img)], capture_output=True, text=True, check=False)
        if res.returncode == 0:
            dev = res.stdout.strip()
            try:
                run([pvcreate, "-q", "-ff", "-y", "--norestorefile", "--uuid",
                     "PvBuil-dTeS-tUuI-dAbC-dEfG-hIjK-lMnOpQ", dev])
                return
            finally:
                subprocess.run([losetup, "-d", dev], check=False)
    _lvm_by_hand(img)


def _vfat(fat: int, label: str) -> Callable[[Path, Path], None]:
    def build(img: Path, tmp: Path) -> None:
        run([tool("mkfs.vfat"), "-F", str(fat), "-n", label, "-i", "5eed1234", str(img)])
    return build


def _iso(joliet: bool) -> Callable[[Path, Path], None]:
    def build(img: Path, tmp: Path) -> None:
        src = tmp / "src"
        (src / "boot").mkdir(parents=True)
        (src / "boot" / "menu.lst").write_bytes(b"timeout 0\n")
        env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
        if joliet:
            run([tool("xorriso"), "-as", "mkisofs", "-quiet", "-J", "-V", "XORLBL", "-o", str(img), str(src)], env=env)
        else:
            run([tool("genisoimage"), "-quiet", "-V", "ISOLBL", "-o", str(img), str(src)], env=env)
    return build


def _minix(version: int) -> Callable[[Path, Path], None]:
    def build(img: Path, tmp: Path) -> None:
        run([tool("mkfs.minix"), f"-{version}", str(img)])
    return build


def _squashfs(img: Path, tmp: Path) -> None:
    src = tmp / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    os.unlink(img)
    run([tool("mksquashfs"), str(src), str(img), "-quiet", "-noappend", "-mkfs-time", "1700000000",
         "-all-time", "1700000000"])


def _ext4(img: Path, tmp: Path) -> None:
    run([tool("mkfs.ext4"), "-q", "-F", "-L", "EXTLBL", "-U", FS_UUID, "-O", "^64bit", str(img)])


def _md(version: str) -> Callable[[Path, Path], None]:
    """An md superblock by hand (linux/raid/md_p.h): 0.90 in the last 64 KiB-aligned 64 KiB, 1.0 8 KiB before
    the (4 KiB-aligned) end, 1.1 at 0, 1.2 at 4 KiB; 1.x with the mdp_superblock_1 checksum."""
    def build(img: Path, tmp: Path) -> None:
        size = os.path.getsize(img)
        set_uuid = bytes.fromhex("0123456789abcdef0fedcba987654321")
        if version == "0.90":
            off = (size & ~0xFFFF) - 0x10000
            sb = bytearray(4096)
            struct.pack_into("<IIIIII", sb, 0, 0xA92B4EFC, 0, 90, 0, 0, 0x01234567)
            struct.pack_into("<IIIII", sb, 24, 1700000000, 1, off // 1024, 2, 2)
            struct.pack_into("<III", sb, 52, 0x89ABCDEF, 0x0FEDCBA9, 0x87654321)
        else:
            off = {"1.0": (size & ~0xFFF) - 0x2000, "1.1": 0, "1.2": 0x1000}[version]
            sb = bytearray(256 + 4)
            struct.pack_into("<IIII", sb, 0, 0xA92B4EFC, 1, 0, 0)
            sb[16:32] = set_uuid
            sb[32:64] = b"pvhost:MDLBL".ljust(32, b"\0")
            struct.pack_into("<QIIQII", sb, 64, 1700000000, 1, 0, (size - off) // 512 - 16, 0, 2)
            struct.pack_into("<QQQ", sb, 128, 16 if off == 0x1000 else 0, (size - off) // 512 - 16, off // 512)
            sb[168:184] = bytes.fromhex("fedcba98765432100123456789abcdef")
            struct.pack_into("<I", sb, 220, 2)  # max_dev
            struct.pack_into("<HH", sb, 256, 0, 0xFFFF)
            csum = sum(struct.unpack_from("<65I", sb))
            csum = (csum & 0xFFFFFFFF) + (csum >> 32)
            struct.pack_into("<I", sb, 216, csum & 0xFFFFFFFF)
        with open(img, "r+b") as f:
            f.seek(off)
            f.write(sb)
    return build


RECIPES: dict[str, Recipe] = {
    "btrfs": Recipe(128, ("mkfs.btrfs",), _btrfs),
    "reiserfs-3.6": Recipe(64, ("mkreiserfs",), _reiser36),
    "reiserfs-3.5": Recipe(64, ("mkreiserfs",), _reiser35),
    "reiserfs-jr": Recipe(64, ("mkreiserfs",), _reiser_jr),
    "jfs": Recipe(64, ("mkfs.jfs",), _jfs),
    "swap": Recipe(16, ("mkswap",), _swap),
    "swap-v0": Recipe(1, (), _swap0),
    "luks1": Recipe(16, ("cryptsetup",), _luks(1)),
    "luks2": Recipe(32, ("cryptsetup",), _luks(2)),
    "lvm2": Recipe(16, ("pvcreate",), _lvm),
    "lvm2-by-hand": Recipe(16, (), lambda img, tmp: _lvm_by_hand(img)),
    "fat12": Recipe(4, ("mkfs.vfat",), _vfat(12, "F12LBL")),
    "fat16": Recipe(64, ("mkfs.vfat",), _vfat(16, "F16LBL")),
    "fat32": Recipe(64, ("mkfs.vfat",), _vfat(32, "F32LBL")),
    "iso9660": Recipe(0, ("genisoimage",), _iso(False)),
    "iso9660-joliet": Recipe(0, ("xorriso",), _iso(True)),
    "minix1": Recipe(4, ("mkfs.minix",), _minix(1)),
    "minix2": Recipe(4, ("mkfs.minix",), _minix(2)),
    "minix3": Recipe(4, ("mkfs.minix",), _minix(3)),
    "squashfs": Recipe(1, ("mksquashfs",), _squashfs),
    "ext4": Recipe(32, ("mkfs.ext4",), _ext4),
    "md-0.90": Recipe(8, (), _md("0.90")),
    "md-1.0": Recipe(8, (), _md("1.0")),
    "md-1.1": Recipe(8, (), _md("1.1")),
    "md-1.2": Recipe(8, (), _md("1.2")),
}


def _key(name: str, r: Recipe) -> str:
    h = hashlib.sha256(repr((RECIPE_VERSION, name, r.size_mb, FS_UUID)).encode())
    for t in r.tools:
        st = os.stat(tool(t))
        h.update(f"{t}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:20]


@cache
def image(name: str) -> Path:
    """The image for `name` (see RECIPES), built once and cached."""
    r = RECIPES[name]
    root = cache_root() / "probe"
    root.mkdir(parents=True, exist_ok=True)
    dest = root / f"{name}-{_key(name, r)}.raw"
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not dest.exists():
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                img = Path(tmp) / "img.raw"
                with open(img, "wb") as f:
                    f.truncate(int(r.size_mb * MIB))
                r.build(img, Path(tmp))
                os.replace(img, dest)
    return dest


def volume(path: Path) -> Volume:
    disk = Disk(path)
    return Volume(disk, 0, disk.size - disk.size % 512, None, "(hd0)")


# --- identify == blkid ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_identify_matches_blkid(name: str) -> None:
    """PVGRUB.md §6 (root=LABEL=/UUID= must match the filesystem): probe.identify reports what `blkid -p`
    reports -- TYPE, UUID, LABEL -- following libblkid's probers (superblocks/*.c, see probe.py)."""
    path = image(name)
    ids = blkid(path)
    got = probe.identify(volume(path))
    assert ids.get("TYPE"), ids
    assert got is not None, ids
    assert (got.fstype, got.uuid, got.label) == (ids["TYPE"], ids.get("UUID"), ids.get("LABEL")), ids


@pytest.mark.parametrize("kind", ["v4", "v4-ftype", "v5"])
def test_identify_xfs_matches_blkid(kind: str) -> None:
    """PVGRUB.md §5: XFS v4 and v5 are identified like blkid (libblkid superblocks/xfs.c, with the v5 CRC)."""
    img = build_xfs_image(kind)
    ids = blkid(img.fs_path)
    got = probe.identify(img.volume())
    assert got is not None and (got.fstype, got.uuid, got.label) == (ids["TYPE"], ids["UUID"], ids["LABEL"])


def test_identify_expected_values() -> None:
    """The values the recipes asked for come back (so the blkid comparison is not vacuous)."""
    assert probe.identify(volume(image("swap"))) == probe.identify(volume(image("swap")))
    ident = probe.identify(volume(image("swap")))
    assert ident is not None and (ident.uuid, ident.label) == (FS_UUID, "SWAPLBL")
    ident = probe.identify(volume(image("luks2")))
    assert ident is not None and (ident.fstype, ident.uuid, ident.label) == ("crypto_LUKS", FS_UUID, "LUKSLBL")
    ident = probe.identify(volume(image("fat32")))
    assert ident is not None and (ident.uuid, ident.label, ident.features) == ("5EED-1234", "F32LBL", ("FAT32",))
    ident = probe.identify(volume(image("md-1.2")))
    assert ident is not None and ident.label == "pvhost:MDLBL" and ident.uuid == "01234567-89ab-cdef-0fed-cba987654321"
    ident = probe.identify(volume(image("lvm2")))
    assert ident is not None and ident.uuid == "PvBuil-dTeS-tUuI-dAbC-dEfG-hIjK-lMnOpQ"
    ident = probe.identify(volume(image("lvm2-by-hand")))
    assert ident is not None and ident.uuid == "PvBuil-dTeS-tUuI-dAbC-dEfG-hIjK-lMnOpQ"


def test_identify_nothing() -> None:
    """No signature -> None (blkid prints nothing)."""
    assert probe.identify(Volume(MemoryDisk(bytes(1 << 20)), 0, 1 << 20)) is None
    assert probe.identify(Volume(MemoryDisk(b""), 0, 0)) is None


# --- GRUB's side ----------------------------------------------------------------------------------------
def test_probe_order_of_the_pv_build() -> None:
    """PVGRUB.md §5: disk_io.c fsys_table (l.48-89) with the FSYS_* of xen/stubdom/grub/Makefile: tftp (mounts
    only the network drive) left out, btrfs (61btrfs patched in, FSYS_BTRFS not defined) absent."""
    assert [d.value for d in GRUB_PROBE_ORDER] == [
        "fat", "ext2fs", "minix", "reiserfs", "vstafs", "jfs", "xfs", "ufs2", "iso9660", "ffs"]
    assert [d.value for d in GRUB_PROBE_ORDER if d.emulated] == [
        "fat", "ext2fs", "minix", "reiserfs", "jfs", "xfs", "iso9660"]
    assert [d.value for d in GRUB_PROBE_ORDER if not d.emulated] == ["vstafs", "ufs2", "ffs"]
    assert "btrfs" not in GRUB_PROBE_ORDER and "tftp" not in GRUB_PROBE_ORDER
    assert GrubDriver("xfs") is GrubDriver.XFS and f"{GrubDriver.FAT}" == "fat"


EXPECTED_DRIVER = {
    "btrfs": None, "reiserfs-3.6": "reiserfs", "reiserfs-3.5": "reiserfs", "reiserfs-jr": "reiserfs",
    "jfs": "jfs", "swap": None, "swap-v0": None, "luks1": None, "luks2": None, "lvm2": None, "lvm2-by-hand": None,
    "fat12": "fat", "fat16": "fat", "fat32": "fat", "iso9660": "iso9660", "iso9660-joliet": "iso9660",
    "minix1": "minix", "minix2": None, "minix3": None, "squashfs": None, "ext4": "ext2fs",
    "md-0.90": None, "md-1.0": None, "md-1.1": None, "md-1.2": None,
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_grub_mount_sequence(name: str) -> None:
    """PVGRUB.md §5 / disk_io.c:427 attempt_mount: the first driver of the PV build whose *_mount accepts the
    whole disk (fsys_fat.c:74, fsys_ext2fs.c:413, fsys_minix.c:161 -- v1 magics only --, fsys_reiserfs.c:576,
    fsys_jfs.c:207, fsys_iso9660.c:107); btrfs, LUKS, LVM, md, swap and squashfs mount with none (Error 17)."""
    vol = volume(image(name))
    out = probe.grub_mount_sequence(vol)
    want = EXPECTED_DRIVER[name]
    assert (out.driver.value if out.driver else None) == want
    if want is None:
        assert out.errnum in (Err.FSYS_MOUNT, Err.GEOM), out  # GEOM: iso9660_devread past a tiny disk's end
    emulated = want in ("fat", "ext2fs", "minix", "xfs", "reiserfs", "jfs", "iso9660")
    assert probe.grub_recognises(vol) == (None if emulated else want)


def test_xfs_versions_in_the_sequence() -> None:
    """PVGRUB.md §5: xfs v4 is mounted by the (emulated) xfs driver; v5 by none: Error 17."""
    v4 = build_xfs_image("v4").volume()
    assert probe.grub_mount_sequence(v4).driver == GrubDriver.XFS and probe.grub_recognises(v4) is None
    v5 = build_xfs_image("v5").volume()
    out = probe.grub_mount_sequence(v5)
    assert out.driver is None and out.errnum == Err.FSYS_MOUNT


def _in_partition(src: Path, ptype: int) -> Volume:
    """`src` as partition 1 (at 1 MiB) of type `ptype` of a disk (the probe only needs the Volume)."""
    data = src.read_bytes()
    disk = MemoryDisk(bytes(MIB) + data)
    return Volume(disk, MIB, len(data) - len(data) % 512, ptype, "(hd0,0)")


@pytest.mark.parametrize(("name", "ptype", "want"), [
    ("fat16", 0x06, "fat"), ("fat16", 0x16, "fat"), ("fat16", 0x83, None),  # fsys_fat.c:80-83
    ("fat32", 0x0C, "fat"), ("fat32", 0x07, None),
    ("minix1", 0x81, "minix"), ("minix1", 0x83, None),  # fsys_minix.c:163-166
    ("reiserfs-3.6", 0x07, "reiserfs"), ("jfs", 0x8E, "jfs"),  # no type test
    ("iso9660", 0x83, None),  # fsys_iso9660.c:117: whole disk only
    ("ext4", 0x83, "ext2fs"), ("ext4", 0xFD, "ext2fs"), ("ext4", 0x8E, None),  # fsys_ext2fs.c:417-421
])
def test_partition_type_rules(name: str, ptype: int, want: str | None) -> None:
    """PVGRUB.md §4: which *_mount look at the MBR type byte (current_slice) and which do not."""
    out = probe.grub_mount_sequence(_in_partition(image(name), ptype))
    assert (out.driver.value if out.driver else None) == want


def test_vstafs_magic_is_an_unsigned_long() -> None:
    """fsys_vstafs.c:53: `fs_magic` is an unsigned long -- 8 bytes in the x86_64 PV-GRUB, 4 in the i386 one."""
    sector = bytearray(MIB)
    sector[0:4] = struct.pack("<I", 0xDEADFACE)
    sector[4:8] = b"\x01\0\0\0"
    vol = Volume(MemoryDisk(bytes(sector)), 0, len(sector))
    assert probe.grub_recognises(vol, arch="i386") == "vstafs"
    assert probe.grub_recognises(vol, arch="x86_64") is None
    sector[4:8] = bytes(4)
    assert probe.grub_recognises(Volume(MemoryDisk(bytes(sector)), 0, len(sector))) == "vstafs"
    vol9e = Volume(MemoryDisk(bytes(MIB) + bytes(sector)), MIB, len(sector), 0x9E, "(hd0,0)")
    assert probe.grub_recognises(vol9e) == "vstafs"
    # exactly 64 KiB: reiserfs_mount's size test (fsys_reiserfs.c:581) lets sector 128 through, the read fails
    # with Error 24 and the sticky errnum stops vstafs_mount's read too
    out = probe.grub_mount_sequence(Volume(MemoryDisk(bytes(sector[:65536])), 0, 65536))
    assert out.driver is None and out.errnum == Err.OUTSIDE_PART


def test_ufs2_and_ffs_magics() -> None:
    """fsys_ufs2.c:93-111: FS_UFS2_MAGIC at byte 1372 of a superblock at 64 KiB (also 8 KiB, 0, 256 KiB, with
    the part_length test mixing bytes and sectors); fsys_ffs.c:85-89: FS_MAGIC at 8 KiB + 1372."""
    big = bytearray(40 * MIB)
    big[65536 + 1372:65536 + 1376] = struct.pack("<I", 0x19540119)
    assert probe.grub_recognises(Volume(MemoryDisk(bytes(big)), 0, len(big))) == "ufs2"
    small = bytearray(MIB)
    small[65536 + 1372:65536 + 1376] = struct.pack("<I", 0x19540119)
    assert probe.grub_recognises(Volume(MemoryDisk(bytes(small)), 0, len(small))) is None  # 65552 sectors needed
    ffs = bytearray(MIB)
    ffs[8192 + 1372:8192 + 1376] = struct.pack("<I", 0x011954)
    assert probe.grub_recognises(Volume(MemoryDisk(bytes(ffs)), 0, len(ffs))) == "ffs"


def test_failed_read_sticks_and_replaces_error_17() -> None:
    """disk_io.c:431-436 + rawread's `while (... && !errnum)`: fat_mount reads the first FAT entry at
    `reserved_sects` (fsys_fat.c:172); past the partition that sets Error 24, every later driver's read then
    fails, and the device reports Error 24 -- even though an ext4 superblock is right there."""
    with open(image("ext4"), "rb") as f:
        head = bytearray(f.read(4 * MIB))
    vol = Volume(MemoryDisk(bytes(head)), 0, len(head))
    assert probe.grub_mount_sequence(vol).driver == GrubDriver.EXT2FS
    head[0:3] = b"\xeb\x3c\x90"  # a FAT boot sector in the ext4 boot block
    struct.pack_into("<HBHBHHBH", head, 11, 512, 1, 60000, 2, 512, 0, 0xF8, 200)
    struct.pack_into("<I", head, 32, 70000)  # long_sectors
    out = probe.grub_mount_sequence(Volume(MemoryDisk(bytes(head)), 0, len(head)))
    assert out.driver is None and out.errnum == Err.OUTSIDE_PART


def test_fsys_buf_after_probe() -> None:
    """fsys_ext2fs.c:423 reads bytes 1024-2047 into FSYS_BUF (SUPERBLOCK), fsys_minix.c:172 24 of them,
    fsys_vstafs.c:52 sector 0 -- on the whole disk; in a type-0x83 partition only ext2fs reads."""
    path = build_xfs_image("v4").fs_path
    data = path.read_bytes()[:4096]
    buf = probe.fsys_buf_after_probe(volume(path), "xfs")
    assert buf[0:512] == data[0:512] and buf[512:1024] == data[1536:2048] and not any(buf[1024:])
    buf = probe.fsys_buf_after_probe(_in_partition(path, 0x83), "xfs")
    assert buf[0:1024] == data[1024:2048]
    buf = probe.fsys_buf_after_probe(_in_partition(path, 0x07), "xfs")
    assert not any(buf)
