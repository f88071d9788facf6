"""The ISO 9660 reader (fs/iso9660.py) on real images: genisoimage and xorriso from a temporary tree, with and
without Rock Ridge and Joliet (tests/fixtures_iso9660_minix.py), read as fsys_iso9660.c reads them."""

from __future__ import annotations

import hashlib
import struct
from functools import cache
from pathlib import Path

import pytest

from pvbuild.pvgrub.blockio import Disk, MemoryDisk, Volume
from pvbuild.pvgrub.check import check_image
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs import iso9660, probe
from pvbuild.pvgrub.profiles import Profile
from tests.fixtures_iso9660_minix import iso_image
from tests.imagebuild import Symlink, Tree
from tests.test_machine import MENU, boot_files

DEEP = "/" + "/".join(f"level{i}" for i in range(1, 10))
LONG = "a-rather-long-file-name-that-iso-level-1-could-never-hold-" + "x" * 40 + ".txt"  # 102 characters


def _blob(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@cache
def tree(long_names: bool = True) -> Tree:
    t: Tree = dict(boot_files())
    t.update({
        "/big.bin": _blob("big", 3 * 1024 * 1024 + 123),  # 1537 sectors
        "/small.txt": b"small\n",
        "/empty": b"",
        f"{DEEP}/deep.txt": b"at the bottom\n",
        "/boot/link": Symlink("grub/menu.lst"),
        "/abs": Symlink("/boot/grub"),
    })
    if long_names:
        t[f"/long/{LONG}"] = b"long name\n"
    return t


def img(tool: str = "genisoimage", rock_ridge: bool = True, joliet: bool = False) -> Path:
    return iso_image(tree(long_names=not joliet), tool, rock_ridge=rock_ridge, joliet=joliet)


def mounted(path: Path, arch: str = "x86_64") -> iso9660.IsoFilesystem:
    disk = Disk(path)
    fs = iso9660.mount(Volume(disk, 0, disk.size), arch=arch)
    assert fs is not None
    return fs


def read(fs: iso9660.IsoFilesystem, path: str) -> bytes:
    f = fs.open(path)
    data = f.read(0, f.size)
    assert len(data) == f.size
    return data


def error(fs: iso9660.IsoFilesystem, path: str) -> GrubError:
    with pytest.raises(GrubError) as e:
        fs.open(path)
    return e.value


RR_VARIANTS = [("genisoimage", False), ("genisoimage", True), ("xorriso", False), ("xorriso", True)]


@pytest.mark.parametrize(("tool", "joliet"), RR_VARIANTS)
def test_rock_ridge_files_read_byte_for_byte(tool: str, joliet: bool) -> None:
    """fsys_iso9660.c:143 iso9660_dir with Rock Ridge NM names (l.237-241), :414 iso9660_read sector by sector:
    menu.lst, the kernel, a 3 MiB file over 1537 sectors, 9 levels of directories, a 102-character name."""
    fs = mounted(img(tool, True, joliet))
    assert fs.grub_name == "iso9660" and fs.identity.fstype == "iso9660"
    for path, content in tree(long_names=not joliet).items():
        if isinstance(content, bytes) and not (path.startswith(DEEP) and tool == "genisoimage"):
            assert read(fs, path) == content, path
    assert read(fs, "/boot/grub/menu.lst") == MENU
    assert fs.open("/empty").size == 0


def test_relocated_deep_directories_are_not_followed() -> None:
    """genisoimage -R moves directories deeper than ISO 9660's 8 levels to /rr_moved and leaves a size-0 record
    with PX (a directory) and CL (child link) in their place. GRUB knows no CL: it descends into the placeholder,
    whose size 0 holds no sector (l.169-172), so anything below is Error 15; the moved copy opens under
    /rr_moved. xorriso does not relocate, and the path opens."""
    fs = mounted(img("genisoimage"))
    e = error(fs, f"{DEEP}/deep.txt")
    assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found")
    assert read(fs, "/rr_moved/level8/level9/deep.txt") == b"at the bottom\n"
    assert read(mounted(img("xorriso")), f"{DEEP}/deep.txt") == b"at the bottom\n"


def test_reads_at_offsets_and_past_the_end() -> None:
    """grub_read (disk_io.c:1658) clips filepos and len to filemax; iso9660_read starts mid-sector (l.423-424)."""
    fs = mounted(img())
    big = tree()["/big.bin"]
    assert isinstance(big, bytes)
    f = fs.open("/big.bin")
    for off, n in ((0, 1), (2047, 2), (2048, 4096), (1_000_001, 70_000), (len(big) - 10, 100), (len(big) + 5, 5)):
        assert f.read(off, n) == big[off:off + n], (off, n)


def test_i386_layout_reads_the_same() -> None:
    """struct iso_sb_info holds an unsigned long: file_start sits at FSYS_BUF+4 on i386, +8 on x86_64 (l.38-52)."""
    fs = mounted(img(), arch="i386")
    assert read(fs, "/boot/grub/menu.lst") == MENU


def test_without_rock_ridge_names_are_upper_case_iso_names() -> None:
    """No Rock Ridge: the names are the ISO 9660 ones, ";1" and a trailing "." cut (l.195-200) and compared
    case-sensitively, so /boot/grub/menu.lst is Error 15 while /BOOT/GRUB/MENU.LST opens."""
    fs = mounted(img("genisoimage", rock_ridge=False))
    e = error(fs, "/boot/grub/menu.lst")
    assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found")
    assert read(fs, "/BOOT/GRUB/MENU.LST") == MENU
    assert read(fs, "/SMALL.TXT") == b"small\n"
    assert read(fs, "/EMPTY") == b""  # "EMPTY.;1": the version, then the dot, are cut
    assert error(fs, "/EMPTY.").number == Err.FILE_NOT_FOUND
    assert error(fs, "/EMPTY.;1").number == Err.FILE_NOT_FOUND


@pytest.mark.parametrize("tool", ["genisoimage", "xorriso"])
def test_joliet_alone_is_ignored(tool: str) -> None:
    """iso9660_mount (l.124-137) keeps the primary volume descriptor only: Joliet's supplementary descriptor is
    never read, so a Joliet image without Rock Ridge has only upper-case ISO names for GRUB."""
    fs = mounted(img(tool, rock_ridge=False, joliet=True))
    assert error(fs, "/boot/grub/menu.lst").number == Err.FILE_NOT_FOUND
    assert read(fs, "/BOOT/GRUB/MENU.LST") == MENU
    names = {e.name for e in fs.listdir(fs.root_ino)}
    assert b"BOOT" in names and b"boot" not in names


def test_missing_and_wrong_type() -> None:
    """l.364-377: a file used as a directory, a directory opened as a file, are Error 2; l.400-404: a missing
    name Error 15, also an empty last component ("/boot/grub/") and "/" itself."""
    fs = mounted(img())
    for path, number, code in (
        ("/nope", Err.FILE_NOT_FOUND, "file-not-found"),
        ("/boot/nope/menu.lst", Err.FILE_NOT_FOUND, "file-not-found"),
        ("/boot/grub/menu.lst/x", Err.BAD_FILETYPE, "bad-file-type"),
        ("/boot/grub", Err.BAD_FILETYPE, "bad-file-type"),
        ("/boot/grub/", Err.FILE_NOT_FOUND, "file-not-found"),
        ("/", Err.FILE_NOT_FOUND, "file-not-found"),
        ("/boot/grub/menu.ls", Err.FILE_NOT_FOUND, "file-not-found"),  # a prefix is not a match (l.362)
        ("/boot/grub/MENU.LST", Err.FILE_NOT_FOUND, "file-not-found"),  # Rock Ridge name only, case-sensitive
    ):
        e = error(fs, path)
        assert (e.number, e.code) == (number, code), (path, e)
    assert read(fs, "//boot///grub/menu.lst") == MENU  # l.160-161: slashes skipped
    assert read(fs, "/boot/grub/menu.lst trailing words") == MENU  # the name ends at a blank (l.163-167)


@pytest.mark.parametrize("tool", ["genisoimage", "xorriso"])
def test_rock_ridge_symlinks_are_not_followed(tool: str) -> None:
    """The SL case is `#if 0` (l.258-319): a symlink's PX mode makes it ISO_OTHER (l.245-250), so opening it or
    walking through it is Error 2. readlink (for `pvbuild diff`) still decodes SL."""
    fs = mounted(img(tool))
    for path in ("/boot/link", "/abs/menu.lst"):
        e = error(fs, path)
        assert (e.number, e.code) == (Err.BAD_FILETYPE, "bad-file-type"), path
    links = {p: fs.readlink(st.ino) for p, st in fs.walk() if st.kind == 0o120000}
    assert links == {"/boot/link": b"grub/menu.lst", "/abs": b"/boot/grub"}


def test_walk_lists_the_tree() -> None:
    """root_ino/stat/listdir: the names GRUB compares, with Rock Ridge modes and sizes."""
    fs = mounted(img())
    seen = {p: st for p, st in fs.walk()}
    for path, content in tree().items():
        if path.startswith(DEEP):
            continue
        assert path in seen, path
        if isinstance(content, bytes):
            assert seen[path].size == len(content) and seen[path].kind == 0o100000
            assert b"".join(fs.content(seen[path].ino, chunk=1 << 16)) == content, path
    assert seen["/rr_moved/level8/level9/deep.txt"].size == 14


def _patched(path: Path, old: bytes, new: bytes) -> MemoryDisk:
    data = path.read_bytes()
    at = data.find(old)
    assert at > 0 and len(old) == len(new)
    return MemoryDisk(data[:at] + new + data[at + len(old):])


def test_rr_entry_flags_stop_the_parse() -> None:
    """l.233-235 + l.324-328: the RR entry's flags are ANDed into rr_flag; flags 0 stop the parse before NM, so
    the ISO name is used (genisoimage writes RR first)."""
    disk = _patched(img(), b"MENU.LST;1\x00RR\x05\x01\x89", b"MENU.LST;1\x00RR\x05\x01\x00")
    fs = iso9660.mount(Volume(disk, 0, disk.size))
    assert fs is not None
    assert error(fs, "/boot/grub/menu.lst").number == Err.FILE_NOT_FOUND
    assert read(fs, "/boot/grub/MENU.LST") == MENU


def test_zero_length_entry_hangs() -> None:
    """A Rock Ridge entry of length 0 before NM and PX: rr_len never shrinks (l.330-331), GRUB loops forever."""
    disk = _patched(img(), b"MENU.LST;1\x00RR\x05\x01", b"MENU.LST;1\x00RR\x00\x01")
    fs = iso9660.mount(Volume(disk, 0, disk.size))
    assert fs is not None
    e = error(fs, "/boot/grub/menu.lst")
    assert (e.number, e.code) == (Err.FSYS_CORRUPT, "fs-hang")
    assert read(fs, "/small.txt") == b"small\n"  # entries before it in other directories are fine


def test_directory_past_the_disk_is_error_16() -> None:
    """l.174-178: a directory sector that cannot be read (rawread's Error 18) becomes Error 16."""
    path = img()
    data = bytearray(path.read_bytes())
    fs = mounted(path)
    boot = next(e for e in fs.listdir(fs.root_ino) if e.name == b"boot")
    data[boot.ino + 2:boot.ino + 6] = (0x01000000).to_bytes(4, "little")  # extent far past the end
    disk = MemoryDisk(bytes(data))
    fs2 = iso9660.mount(Volume(disk, 0, disk.size))
    assert fs2 is not None
    e = error(fs2, "/boot/grub/menu.lst")
    assert e.number == Err.FSYS_CORRUPT
    data[boot.ino + 2:boot.ino + 6] = (0x80000000).to_bytes(4, "little")  # negative as a C int (l.83-87)
    disk = MemoryDisk(bytes(data))
    fs3 = iso9660.mount(Volume(disk, 0, disk.size))
    assert fs3 is not None
    assert error(fs3, "/boot/grub/menu.lst").number == Err.FSYS_CORRUPT


def test_file_extent_past_the_disk_fails_the_read() -> None:
    """iso9660_read (l.433-434): a failing sector returns 0 with rawread's Error 18 set."""
    path = img()
    data = bytearray(path.read_bytes())
    fs = mounted(path)
    rec = next(e for e in fs.listdir(fs.root_ino) if e.name == b"small.txt")
    data[rec.ino + 2:rec.ino + 6] = (0x00F00000).to_bytes(4, "little")
    disk = MemoryDisk(bytes(data))
    fs2 = iso9660.mount(Volume(disk, 0, disk.size))
    assert fs2 is not None
    f = fs2.open("/small.txt")
    with pytest.raises(GrubError) as e:
        f.read(0, 10)
    assert e.value.number == Err.GEOM


def test_only_the_whole_disk_mounts() -> None:
    """l.117-119: current_partition must be 0xFFFFFF; a partition holding an ISO image is not mounted, and a
    disk without a primary volume descriptor in sectors 16-31 neither."""
    disk = Disk(img())
    assert iso9660.mount(Volume(disk, 0, disk.size, part_type=0x83, name="(hd0,0)")) is None
    blank = MemoryDisk(bytes(128 * 1024))
    assert iso9660.mount(Volume(blank, 0, blank.size)) is None
    assert probe.grub_mount_sequence(Volume(disk, 0, disk.size)).driver == probe.GrubDriver.ISO9660


def test_whole_disk_iso_boots_end_to_end() -> None:
    """check_image on a whole-disk Rock Ridge ISO holding /boot/grub/menu.lst and a synthetic Xen kernel: PV-GRUB
    mounts it with iso9660 (last but one in fsys_table) and boots; without Rock Ridge the menu is not found."""
    r = check_image(img(), Profile()).to_json()
    assert r["outcome"] == "boots", r["findings"]
    assert r["menu"] == {"device": "(hd0)", "path": "/boot/grub/menu.lst"}
    assert r["kernel"]["xen_pv"] is True
    r = check_image(img("genisoimage", rock_ridge=False), Profile()).to_json()
    assert r["outcome"] == "hang-prompt"
    assert "menu-not-found" in [f["code"] for f in r["findings"]]


@pytest.mark.parametrize(("tool", "piece_is"), [("genisoimage", "suffix"), ("xorriso", "prefix")])
def test_names_split_over_nm_entries_keep_one_piece(tool: str, piece_is: str) -> None:
    """A Rock Ridge name too long for its record is split over NM entries (CONTINUE flag), the rest in a CE
    continuation area. GRUB keeps only the last NM it reads before its parse stops (l.237-241 overwrite `name`;
    l.324-328 stop once NM and PX were seen): genisoimage writes NM before PX, so GRUB reads on into the
    continuation area and keeps the *last* piece; xorriso writes PX first, so the first NM ends the parse and GRUB
    keeps the *first* piece. Either way the full name is Error 15 and only that piece opens the file."""
    full = "n" * 150 + "-tail-of-the-name"
    fs = mounted(iso_image({f"/long/{full}": b"split name\n", "/long/short": b"short\n"}, tool))
    assert error(fs, f"/long/{full}").number == Err.FILE_NOT_FOUND
    long_dir = next(e.ino for e in fs.listdir(fs.root_ino) if e.name == b"long")
    names = [e.name for e in fs.listdir(long_dir)]
    piece = next(n for n in names if n != b"short")
    assert len(piece) < len(full)
    assert full.encode().endswith(piece) if piece_is == "suffix" else full.encode().startswith(piece)
    assert read(fs, f"/long/{piece.decode()}") == b"split name\n"
    assert read(fs, "/long/short") == b"short\n"


def _record(name: bytes, extent: int, size: int, flags: int, system_use: bytes = b"", length: int = 0) -> bytes:
    head = bytes([0, 0]) + struct.pack("<II", extent, 0) + struct.pack("<II", size, 0) + bytes(7) \
        + bytes([flags, 0, 0]) + struct.pack("<HH", 1, 0) + bytes([len(name)]) + name
    rec = head + system_use
    length = length or len(rec)
    rec = rec.ljust(length, b"\0")
    return bytes([length]) + rec[1:]


def _filler(at: int, length: int, k: int) -> bytes:
    """A record of exactly `length` bytes whose system use area is one unknown version-1 entry (skipped)."""
    name = b"F%d" % k
    start = at + 33 + len(name)
    start += start & 1  # l.211-212
    pad = b"\0" * (start - at - 33 - len(name))
    entry_len = at + length - start
    return _record(name, 0, 0, 0, pad + b"ZZ" + bytes([entry_len, 1]) + bytes(entry_len - 4), length)


def _overrun_image(with_ce: bool) -> MemoryDisk:
    sec = 2048
    disk = bytearray(26 * sec)
    pvd = bytearray(sec)
    pvd[0:7] = b"\x01CD001\x01"
    pvd[80:88] = struct.pack("<II", 26, 0)
    pvd[156:156 + 34] = _record(b"\0", 20, sec, 2)
    disk[16 * sec:17 * sec] = pvd
    disk[17 * sec:17 * sec + 7] = b"\xffCD001\x01"
    recs = _record(b"\0", 20, sec, 2) + _record(b"\1", 20, sec, 2)
    ce = b"CE\x1c\x01" + struct.pack("<IIIIII", 22, 0, 1024, 0, 0, 0) if with_ce else b"ZZ\x1c\x01" + bytes(24)
    recs += _record(b"A;1", 23, 2, 0, ce)
    k = 0
    while len(recs) < sec:
        n = min(255, sec - len(recs))
        if 0 < sec - len(recs) - n < 40:
            n -= 40
        recs += _filler(len(recs), n, k)
        k += 1
    assert len(recs) == sec and recs[-1:] != b""  # the sector is full: no zero length byte ends the walk
    disk[20 * sec:21 * sec] = recs
    disk[22 * sec:22 * sec + 40] = _record(b"GHOST;1", 24, 6, 0)  # what the CE area loads into RRCONT_BUF
    disk[23 * sec:23 * sec + 2] = b"a\n"
    disk[24 * sec:24 * sec + 6] = b"ghost\n"
    return MemoryDisk(bytes(disk))


def test_a_full_directory_sector_runs_into_the_continuation_buffer() -> None:
    """GRUB bug kept: the record walk (l.182-183) stops only at a zero length byte. A directory sector filled to
    its last byte runs on into RRCONT_BUF (FSYS_BUF+6144), which here holds a sector an earlier record's CE entry
    loaded (l.341-343): its bytes are taken for a record, and a file named there opens -- a file only GRUB sees.
    Without that CE, RRCONT_BUF holds what the probe left (zeros) and the walk ends there: Error 15."""
    fs = iso9660.mount(Volume(disk := _overrun_image(True), 0, disk.size))
    assert fs is not None
    assert read(fs, "/A") == b"a\n"
    assert read(fs, "/GHOST") == b"ghost\n"
    fs = iso9660.mount(Volume(disk := _overrun_image(False), 0, disk.size))
    assert fs is not None
    assert read(fs, "/A") == b"a\n"
    assert error(fs, "/GHOST").number == Err.FILE_NOT_FOUND
