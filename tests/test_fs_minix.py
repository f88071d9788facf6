"""The Minix reader (fs/minix.py) on Minix v1 images written by tests/fixtures_iso9660_minix.py (checked with
`fsck.minix -f`) and on empty images made by util-linux mkfs.minix -1/-2/-3, read as fsys_minix.c reads them."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import pytest

from pvbuild.pvgrub.blockio import Disk, MemoryDisk, Volume
from pvbuild.pvgrub.check import check_image
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs import minix, probe
from pvbuild.pvgrub.profiles import Profile
from tests.fixtures_iso9660_minix import BOOT_BLOCK, fsck_minix, minix_image, mkfs_minix
from tests.imagebuild import Symlink, Tree
from tests.test_machine import MENU, boot_files

DEEP = "/" + "/".join(f"d{i}" for i in range(1, 13))
NAME14 = "fourteen-chars"
NAME30 = "a-name-of-thirty-characters-xy"
assert len(NAME14) == 14 and len(NAME30) == 30


def _blob(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


SIZES = {
    "/direct.bin": 7 * 1024,  # zones 0-6 only
    "/indirect.bin": 7 * 1024 + 1,  # the first block through zone 7
    "/ind-full.bin": (7 + 512) * 1024,  # every entry of the indirect block
    "/double.bin": (7 + 512) * 1024 + 1,  # the first block through zone 8
    "/double-big.bin": (7 + 512 + 700) * 1024 + 77,  # two second-level blocks of zone 8
}


@cache
def tree(namelen: int = 14) -> Tree:
    t: Tree = {
        "/boot/grub/menu.lst": MENU,
        "/small.txt": b"small\n",
        "/empty": b"",
        f"{DEEP}/deep.txt": b"at the bottom\n",
        f"/names/{NAME14}": b"fourteen\n",
        "/boot/link": Symlink("grub/menu.lst"),
        "/abs": Symlink("/boot/grub"),
        "/d1/up": Symlink("../small.txt"),
        "/loop1": Symlink("loop2"),
        "/loop2": Symlink("loop1"),
        "/c1": Symlink("c2"), "/c2": Symlink("c3"), "/c3": Symlink("c4"), "/c4": Symlink("c5"),
        "/c5": Symlink("small.txt"),
        "/c0": Symlink("c1"),
        "/longlink": Symlink("/" + "x" * 1000),
        "/sparse.bin": bytes(2048) + b"after the hole\n",
    }
    for path, size in SIZES.items():
        t[path] = _blob(path, size)
    if namelen == 30:
        t[f"/names/{NAME30}"] = b"thirty\n"
    return t


def img(namelen: int = 14) -> Path:
    return minix_image(tree(namelen), namelen, holes=frozenset({"/sparse.bin"}))


def mounted(path: Path) -> minix.MinixFilesystem:
    disk = Disk(path)
    fs = minix.mount(Volume(disk, 0, disk.size))
    assert fs is not None
    return fs


def read(fs: minix.MinixFilesystem, path: str) -> bytes:
    f = fs.open(path)
    data = f.read(0, f.size)
    assert len(data) == f.size
    return data


def error(fs: minix.MinixFilesystem, path: str) -> GrubError:
    with pytest.raises(GrubError) as e:
        fs.open(path)
    return e.value


@pytest.mark.parametrize("namelen", [14, 30])
def test_images_pass_fsck(namelen: int) -> None:
    """The pure-Python writer makes what util-linux's checker accepts."""
    r = fsck_minix(img(namelen))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("namelen", [14, 30])
def test_every_file_reads_byte_for_byte(namelen: int) -> None:
    """fsys_minix.c:296 minix_dir + :245 minix_read with :201 minix_block_map: direct zones, the indirect zone 7,
    the double-indirect zone 8 (two second-level blocks), 12 levels of directories, full-length names."""
    fs = mounted(img(namelen))
    assert fs.namelen == namelen and fs.grub_name == "minix"
    for path, content in tree(namelen).items():
        if isinstance(content, bytes) and path != "/sparse.bin":
            assert read(fs, path) == content, path
    assert fs.open("/empty").size == 0


def test_reads_at_offsets() -> None:
    """grub_read's clipping (disk_io.c:1658) and minix_read starting mid-block, across the zone 7 / zone 8
    boundary (the mapblock1/mapblock2 caches of l.214-240 switching)."""
    fs = mounted(img())
    data = tree()["/double-big.bin"]
    assert isinstance(data, bytes)
    f = fs.open("/double-big.bin")
    for off, n in ((0, 10), (7 * 1024 - 3, 6), (519 * 1024 - 5, 10), (1031 * 1024 - 1, 3000), (len(data) - 5, 50)):
        assert f.read(off, n) == data[off:off + n], (off, n)


def test_a_hole_reads_the_boot_block() -> None:
    """GRUB bug kept: a zero direct zone is not a hole for minix_read -- block 0 (the boot block) is read
    (l.207, l.273) instead of zeros."""
    fs = mounted(img())
    data = read(fs, "/sparse.bin")
    assert data[:1024] == BOOT_BLOCK and data[1024:2048] == BOOT_BLOCK
    assert data[2048:] == b"after the hole\n"
    ino = next(st.ino for p, st in fs.walk() if p == "/sparse.bin")
    assert b"".join(fs.content(ino, chunk=1000)) == tree()["/sparse.bin"]  # Linux's view: zeros


def test_symlinks() -> None:
    """l.352-411: relative links from the directory holding them, absolute ones from the root inode 1; five
    links are followed, the sixth is Error 26; a target plus the rest of the path over 1022 bytes is Error 14."""
    fs = mounted(img())
    assert read(fs, "/boot/link") == MENU
    assert read(fs, "/abs/menu.lst") == MENU
    assert read(fs, "/d1/up") == b"small\n"
    assert read(fs, "/c1") == b"small\n"  # five links
    for path, number, code in (
        ("/c0", Err.SYMLINK_LOOP, "symlink-loop"),  # six
        ("/loop1", Err.SYMLINK_LOOP, "symlink-loop"),
        ("/longlink", Err.FILE_NOT_FOUND, "file-not-found"),  # 1001 bytes fit
        ("/longlink/" + "y" * 30, Err.FILELENGTH, "fs-symlink-too-long"),  # 1001 + 31 do not
        ("/abs", Err.BAD_FILETYPE, "bad-file-type"),  # a directory at the end
    ):
        e = error(fs, path)
        assert (e.number, e.code) == (number, code), (path, e)
    assert fs.readlink(next(st.ino for p, st in fs.walk() if p == "/abs")) == b"/boot/grub"


def test_missing_and_wrong_type() -> None:
    """l.414-424, l.435-439, l.456-472: Error 15 for a missing name or an empty component, Error 2 for a file
    used as a directory or a directory opened."""
    fs = mounted(img())
    for path, number, code in (
        ("/nope", Err.FILE_NOT_FOUND, "file-not-found"),
        ("/boot/grub/", Err.FILE_NOT_FOUND, "file-not-found"),
        ("/", Err.FILE_NOT_FOUND, "file-not-found"),
        ("/boot/grub/menu.lst/x", Err.BAD_FILETYPE, "bad-file-type"),
        ("/boot/grub", Err.BAD_FILETYPE, "bad-file-type"),
        ("/boot/grub/menu.ls", Err.FILE_NOT_FOUND, "file-not-found"),
    ):
        e = error(fs, path)
        assert (e.number, e.code) == (number, code), (path, e)
    assert read(fs, "/boot/grub/menu.lst trailing") == MENU


def test_name_length_limits() -> None:
    """Entries hold 14 (magic 0x137F) or 30 (0x138F) characters (l.176-186, l.494); the name is compared with
    `substring` up to that length, so a longer component never matches (Linux refuses to create it)."""
    fs14 = mounted(img(14))
    assert read(fs14, f"/names/{NAME14}") == b"fourteen\n"
    assert error(fs14, f"/names/{NAME14}x").number == Err.FILE_NOT_FOUND
    assert error(fs14, f"/names/{NAME14[:-1]}").number == Err.FILE_NOT_FOUND
    fs30 = mounted(img(30))
    assert read(fs30, f"/names/{NAME30}") == b"thirty\n"
    assert error(fs30, f"/names/{NAME30}z").number == Err.FILE_NOT_FOUND


def test_walk_lists_the_tree() -> None:
    """root_ino/stat/listdir/readlink/content for `pvbuild diff`."""
    fs = mounted(img())
    seen = dict(fs.walk())
    for path, content in tree().items():
        assert path in seen, path
        kind = 0o120000 if isinstance(content, Symlink) else 0o100000
        assert seen[path].kind == kind, path
        if isinstance(content, Symlink):
            assert fs.readlink(seen[path].ino) == content.target.encode()
        else:
            assert b"".join(fs.content(seen[path].ino)) == content, path
    assert seen[DEEP].kind == 0o040000 and seen["/"].ino == 1


def test_mkfs_minix_versions() -> None:
    """minix_mount (l.176-186) knows the v1 magics only: mkfs.minix -1 images mount (14 or 30 characters), -2
    (0x2468/0x2478) and -3 (0x4D5A at offset 24; offset 16 holds s_max_size's low half) do not."""
    for namelen in (14, 30):
        fs = mounted(mkfs_minix(1, namelen))
        assert fs.namelen == namelen
        assert fs.listdir(fs.root_ino) == []
        assert error(fs, "/boot/grub/menu.lst").number == Err.FILE_NOT_FOUND
    for version, namelen in ((2, 14), (2, 30), (3, 60)):
        disk = Disk(mkfs_minix(version, namelen))
        vol = Volume(disk, 0, disk.size)
        assert minix.mount(vol) is None, version
        assert probe.grub_mount_sequence(vol).driver is None


def test_partition_types() -> None:
    """l.163-166: the whole disk or partition type 0x80/0x81 only."""
    disk = Disk(img())
    assert minix.mount(Volume(disk, 0, disk.size, part_type=0x81, name="(hd0,0)")) is not None
    assert minix.mount(Volume(disk, 0, disk.size, part_type=0x83, name="(hd0,0)")) is None


def test_empty_symlink_fails_without_an_error_number() -> None:
    """l.387-390: an empty symlink makes grub_read return 0, and minix_dir returns 0 with errnum still 0."""
    path = minix_image({"/empty-link": Symlink(""), "/f": b"x"})
    fs = mounted(path)
    e = error(fs, "/empty-link")
    assert (e.number, e.code) == (Err.NONE, "fs-silent-failure")


def test_zero_indirect_zone_is_error_16() -> None:
    """l.214-219: a file past 7 blocks whose zone 7 is 0 is Error 16 on read."""
    path = img()
    data = bytearray(path.read_bytes())
    fs = mounted(path)
    ino = next(st.ino for p, st in fs.walk() if p == "/indirect.bin")
    sb = data[1024:1024 + 24]
    table = (2 + int.from_bytes(sb[4:6], "little") + int.from_bytes(sb[6:8], "little")) * 1024
    o = table + (ino - 1) * 32 + 14 + 2 * 7
    data[o:o + 2] = b"\0\0"
    disk = MemoryDisk(bytes(data))
    fs2 = minix.mount(Volume(disk, 0, disk.size))
    assert fs2 is not None
    f = fs2.open("/indirect.bin")
    content = tree()["/indirect.bin"]
    assert isinstance(content, bytes)
    assert f.read(0, 100) == content[:100]
    with pytest.raises(GrubError) as e:
        f.read(0, f.size)
    assert e.value.number == Err.FSYS_CORRUPT


def test_whole_disk_minix_boots_end_to_end() -> None:
    """check_image on a whole-disk Minix v1 image (30-character names: "initrd.img-6.1.0-synthetic" is 26) with
    /boot/grub/menu.lst and a synthetic Xen kernel: fat and ext2fs decline, minix mounts, PV-GRUB boots."""
    path = minix_image(boot_files(), 30, size_kib=16384)
    assert fsck_minix(path).returncode == 0
    r = check_image(path, Profile()).to_json()
    assert r["outcome"] == "boots", r["findings"]
    assert r["menu"] == {"device": "(hd0)", "path": "/boot/grub/menu.lst"}
    assert r["kernel"]["xen_pv"] is True
    # with 14-character names the kernel's name cannot be stored at all: the writer refuses, as Linux would
    with pytest.raises(AssertionError):
        minix_image(boot_files(), 14, size_kib=16384)


def test_past_the_double_indirect_range_grub_indexes_past_datablock1() -> None:
    """GRUB bug kept: past 7 + 512 + 512*512 blocks, `DATABLOCK1[logical_block >> 9]` (l.233) reads past the
    1 KiB indirect block, here DATABLOCK2's first entry: after the lookup it holds the root directory block, whose
    first entry is "." (inode 1). So block 1 (the superblock) is taken for a second-level block and its first
    16-bit word, s_ninodes, for the data block: GRUB returns block s_ninodes of the disk."""
    path = img()
    data = bytearray(path.read_bytes())
    fs = mounted(path)
    ino = next(st.ino for p, st in fs.walk() if p == "/double-big.bin")
    sb = data[1024:1024 + 24]
    table = (2 + int.from_bytes(sb[4:6], "little") + int.from_bytes(sb[6:8], "little")) * 1024
    data[table + (ino - 1) * 32 + 4:table + (ino - 1) * 32 + 8] = (300_000_000).to_bytes(4, "little")
    disk = MemoryDisk(bytes(data))
    fs2 = minix.mount(Volume(disk, 0, disk.size))
    assert fs2 is not None
    f = fs2.open("/double-big.bin")
    assert f.size == 300_000_000
    at = (7 + 512 + 512 * 512) * 1024
    ninodes = int.from_bytes(sb[0:2], "little")
    want = bytes(data[ninodes * 1024:ninodes * 1024 + 64])
    assert any(want) and f.read(at, 64) == want
