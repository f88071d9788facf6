"""PV-GRUB's XFS driver (GRUB 0.97 stage2/fsys_xfs.c) on images made by the real xfsprogs (tests/fixtures_xfs.py).

Every test names the rule it checks: a PVGRUB.md section and the line of the reference `stage2/fsys_xfs.c`
(or disk_io.c / xfs.h) the behaviour comes from. "Derived" rules were read from the C code and not seen on a
running PV-GRUB; the Linux side of each comparison comes from xfs_db (tests/fixtures_xfs.linux_view).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from functools import cache
from pathlib import Path

import pytest

from pvbuild.pvgrub.blockio import Disk, MemoryDisk, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs import probe, xfs
from pvbuild.pvgrub.fs.xfs import XfsFilesystem
from tests.fixtures_xfs import (
    LABEL,
    MENU,
    UUID,
    XFS_ENV,
    Geometry,
    XfsImage,
    blkid,
    bmap,
    build_xfs_image,
    inode_number,
    linux_view,
    tool,
    xfs_db,
)

NODE = "/nodedir/a-rather-long-file-name-to-fill-directory-blocks-{:05d}"


@cache
def image(kind: str) -> XfsImage:
    return build_xfs_image(kind)


@cache
def fs_of(kind: str, part: int = 0) -> XfsFilesystem:
    fs = xfs.mount(image(kind).volume(part))
    assert fs is not None, kind
    return fs


def read(fs: XfsFilesystem, path: str) -> bytes:
    f = fs.open(path)
    return f.read(0, f.size)


def grub_error(fs: XfsFilesystem, path: str) -> GrubError:
    with pytest.raises(GrubError) as info:
        fs.open(path)
    return info.value


def core(img: XfsImage, path: str) -> bytes:
    """The raw inode of `path` (from xfs_db's inode number and the superblock geometry)."""
    geo = Geometry.read(img.fs_path)
    with open(img.fs_path, "rb") as f:
        ino = int.from_bytes(f.read(64)[56:64], "big") if path == "/" else inode_number(img.fs_path, path)
        f.seek(geo.ino_offset(ino))
        return f.read(geo.isize)


# --- mount and identity ---------------------------------------------------------------------------------
def test_v4_mounts_and_identity_matches_blkid() -> None:
    """PVGRUB.md §5 / fsys_xfs.c:459-463: "XFSB" + version 4 mounts; the identity is blkid's (TYPE/UUID/LABEL)."""
    img = image("v4")
    fs = fs_of("v4")
    ids = blkid(img.fs_path)
    assert (fs.identity.fstype, fs.identity.uuid, fs.identity.label) == (ids["TYPE"], ids["UUID"], ids["LABEL"])
    assert (fs.identity.uuid, fs.identity.label) == (UUID, LABEL)
    assert fs.identity.features == ("v4",)
    assert xfs.identify(img.volume()) == fs.identity
    assert xfs.refusal_reason(img.volume()) is None
    assert fs.grub_name == "xfs"


def test_v5_is_refused_with_a_reason() -> None:
    """PVGRUB.md §5: only `sb_versionnum & 0xF == 4` mounts (fsys_xfs.c:461); V5 (crc=1, the mkfs default) ->
    Error 17 for the device (disk_io.c:435 attempt_mount: no driver mounted, errnum still 0)."""
    img = image("v5")
    vol = img.volume()
    assert xfs.mount(vol) is None
    reason = xfs.refusal_reason(vol)
    assert reason is not None and "v5 (crc=1)" in reason and "mkfs.xfs -m crc=0 -n ftype=0" in reason
    ident = xfs.identify(vol)
    ids = blkid(img.fs_path)
    assert ident is not None and (ident.fstype, ident.uuid, ident.label) == (ids["TYPE"], ids["UUID"], ids["LABEL"])
    assert {"v5", "crc", "ftype"} <= set(ident.features)
    assert probe.grub_mount_sequence(vol).errnum == Err.FSYS_MOUNT


def test_mount_checks_only_magic_and_version() -> None:
    """fsys_xfs.c:459-483: xfs_mount reads 200 bytes at sector 0 and checks magic and version only; nothing
    else of the superblock (so garbage geometry mounts, and fails later)."""
    sb = bytearray(512)
    sb[0:4] = b"XFSB"
    sb[100:102] = (0xB4A4).to_bytes(2, "big")
    vol = Volume(MemoryDisk(bytes(sb) + bytes(4096)), 0, 4608)
    fs = xfs.mount(vol)
    assert fs is not None
    assert xfs.identify(vol) is None  # blkid's sanity checks fail
    err = grub_error(fs, "/boot/grub/menu.lst")
    assert err.number == Err.FSYS_CORRUPT and err.code == "xfs-geometry"
    sb[100:102] = (0xB4A3).to_bytes(2, "big")
    vol3 = Volume(MemoryDisk(bytes(sb)), 0, 512)
    assert xfs.mount(vol3) is None and "version 3" in (xfs.refusal_reason(vol3) or "")
    assert xfs.mount(Volume(MemoryDisk(bytes(512)), 0, 512)) is None
    assert xfs.refusal_reason(Volume(MemoryDisk(bytes(512)), 0, 512)) is None
    assert xfs.mount(Volume(MemoryDisk(bytes(sb[:200])), 0, 200)) is None  # no whole sector: devread fails


def test_mkfs_defaults_ftype_1_with_crc_0(tmp_path: Path) -> None:
    """PVGRUB.md §5: `-m crc=0` alone gives ftype=1 (determined with mkfs.xfs -N); `-n ftype=0` is needed."""
    target = tmp_path / "fs.raw"
    target.write_bytes(b"")
    os.truncate(target, 64 << 20)
    res = subprocess.run([tool("mkfs.xfs"), "-N", "-f", "-m", "crc=0", str(target)], capture_output=True,
                         text=True, env={**os.environ, **XFS_ENV}, check=False)
    assert res.returncode == 0, res.stderr
    assert re.search(r"ftype=1", res.stdout), res.stdout
    assert fs_of("v4-ftype").identity.features == ("v4", "ftype")


def test_v4_ftype_lookups_fail() -> None:
    """PVGRUB.md §5: V4 with ftype=1 directories cannot be parsed (Error 15, seen on a GRUB 0.97 shell).
    Derived from fsys_xfs.c:369-373: the shortform entry is taken as namelen+3 bytes then the inode number, so
    the file-type byte becomes the top byte of the inode number and every later entry is read one byte off.
    The root here is shortform: its first entry ("blockdir") gets a wrong inode (a read outside the partition,
    then the stale root inode is searched again), "boot" is never found. (Block directories are another
    matter: see the next test.)"""
    fs = fs_of("v4-ftype")
    for path in ("/boot/grub/menu.lst", "/boot/vmlinuz", "/blockdir/entry-00", "/links/t1"):
        err = grub_error(fs, path)
        assert err.number == Err.FILE_NOT_FOUND, (path, err)
        assert err.code == "xfs-ftype"
    assert [f.code for f in fs.findings()] == ["xfs-ftype", "xfs-v4"]
    assert [f.code for f in fs_of("v4").findings()] == ["xfs-v4"]


def test_v4_ftype_block_directories_misread_after_a_5_mod_8_name() -> None:
    """Derived, fsys_xfs.c:399: a data entry is taken to be roundup8(namelen + 11) bytes; with ftype it is
    roundup8(namelen + 12) (inode 8, namelen 1, name, file type 1, tag 2). The two differ only when namelen is
    5 mod 8, so in block/leaf/node directories GRUB reads every entry right up to the first such name and
    misreads the rest: with only block directories on the way, /boot/grub/menu.lst opens on an ftype=1 V4."""
    img = image("v4-ftype-block")
    fs = xfs.mount(img.volume())
    assert fs is not None and "ftype" in fs.identity.features
    for path in ("/boot/grub/menu.lst", "/boot/vmlinuz-5.10", "/r-05", "/bad/aaaaa"):
        assert read(fs, path) == img.files[path], path
    for path in ("/bad/zz-target", "/bad/badfile-00"):
        assert grub_error(fs, path).number == Err.FILE_NOT_FOUND, path


# --- files and directories -------------------------------------------------------------------------------
def test_directory_shapes() -> None:
    """The fixture holds the four directory formats fsys_xfs.c:333-452 reads (checked with xfs_db): shortform
    (format 1), block (XD2B), leaf (LEAF1 0xd2f1) and node (0xfebe node block, LEAFN leaves, btree format)."""
    img = image("v4")

    def fmt(path: str) -> int:
        return core(img, path)[5]

    def leaf_magic(path: str) -> str:
        out = xfs_db(img.fs_path, f"path {path}", "dblock 8388608", "type text", "p")
        return out.split()[9] + out.split()[10]

    assert fmt("/") == 1 and fmt("/sfdir") == 1 and fmt("/boot") == 1
    assert fmt("/blockdir") == 2 and xfs_db(img.fs_path, "path /blockdir", "dblock 0", "type text", "p").split()[1:5] \
        == ["58", "44", "32", "42"]
    assert fmt("/leafdir") == 2 and leaf_magic("/leafdir") == "d2f1"
    assert fmt("/nodedir") == 3 and leaf_magic("/nodedir") == "febe"


@pytest.mark.parametrize("kind", ["v4", "v4-1k"])
def test_files_read_back(kind: str) -> None:
    """PVGRUB.md §5 / fsys_xfs.c:537 xfs_dir + :487 xfs_read: every file of the tree (a sample of the 3000-entry
    node directory) reads back as Linux sees it, through shortform, block, leaf and node directories."""
    img = image(kind)
    fs = fs_of(kind)
    node = [p for p in img.files if p.startswith("/nodedir/")]
    sample = set(node[::250]) | {node[0], node[-1]}
    skip = {"/geo/holes", "/geo/tail", "/geo/unwritten", "/geo/attrbtree"}  # tests of their own below
    checked = 0
    for path, want in sorted(img.files.items()):
        if path in skip or (path.startswith("/nodedir/") and path not in sample):
            continue
        f = fs.open(path)
        assert f.size == len(want), path
        assert f.read(0, f.size) == want, path
        checked += 1
    assert checked > 300


def test_random_access_reads() -> None:
    """grub_read (disk_io.c:1663) semantics: one xfs_read from filepos; len clipped to the file size."""
    fs = fs_of("v4")
    want = image("v4").files["/boot/initrd.img-5.10.0-pv"]
    f = fs.open("/boot/initrd.img-5.10.0-pv")
    for off, n in ((0, 10), (4095, 2), (123457, 70000), (len(want) - 5, 100), (len(want), 10)):
        assert f.read(off, n) == want[off:off + n]


@pytest.mark.parametrize(("path", "number"), [
    ("/sfdir/nope", Err.FILE_NOT_FOUND),
    ("/blockdir/nope", Err.FILE_NOT_FOUND),
    ("/leafdir/nope", Err.FILE_NOT_FOUND),
    ("/nodedir/nope", Err.FILE_NOT_FOUND),
    ("/blockdir/entry-0", Err.FILE_NOT_FOUND),  # a prefix is not a match (substring() == -1)
    ("/boot/grub/menu.ls", Err.FILE_NOT_FOUND),
    ("/boot/grub/", Err.FILE_NOT_FOUND),  # trailing '/': the empty name matches nothing (l.596)
    ("/", Err.FILE_NOT_FOUND),
    ("/boot", Err.BAD_FILETYPE),  # a directory at the end (l.575)
    ("/boot/grub/menu.lst/x", Err.BAD_FILETYPE),  # a file in the middle (l.584)
    ("/empty/x", Err.BAD_FILETYPE),
])
def test_path_errors(path: str, number: int) -> None:
    """PVGRUB.md §4 / fsys_xfs.c:574-618: Error 15 when the name is not in the directory (exact match only),
    Error 2 for a non-regular file at the end or a non-directory in the middle."""
    assert grub_error(fs_of("v4"), path).number == number


@pytest.mark.parametrize("path", [
    "/boot/grub/menu.lst root=/dev/xvda1 ro",  # the name ends at a blank (l.574, l.591)
    "//boot///grub//menu.lst",  # runs of '/' are skipped (l.589)
    "/./boot/./grub/menu.lst",  # "." in a shortform directory: inode 0 keeps the directory (l.357, l.606)
    "/blockdir/../boot/grub/menu.lst",  # ".." is a real entry of block directories
    "/boot/boot/boot/grub/menu.lst",  # the kiwi `boot -> .` symlink (PVGRUB.md §1)
    "/links/abs",  # absolute target, from the root (l.567)
    "/links/dir/grub/menu.lst",  # a symlink to a directory in the middle of the path
    "/links/reldir/grub/menu.lst",  # relative "../boot" from a block directory
    "/blockdir/up",
    "/sfdir/self",  # "./f"
])
def test_paths_that_resolve(path: str) -> None:
    """PVGRUB.md §4 / fsys_xfs.c:537-621: path forms GRUB's xfs_dir resolves."""
    want = image("v4").files["/sfdir/f"] if path == "/sfdir/self" else MENU
    assert read(fs_of("v4"), path) == want


def test_dotdot_is_not_found_in_shortform_directories() -> None:
    """Derived, fsys_xfs.c:361: for ".." next_dentry does `++name` on usual[0] (".") instead of using
    usual[1], so the name it returns is empty and ".." never matches in a shortform directory; block, leaf
    and node directories hold a real ".." entry."""
    fs = fs_of("v4")
    assert grub_error(fs, "/sfdir/../boot/grub/menu.lst").number == Err.FILE_NOT_FOUND
    assert grub_error(fs, "/sfdir/up").number == Err.FILE_NOT_FOUND  # symlink "../boot/grub/menu.lst"
    assert grub_error(fs, "/boot/../boot/grub/menu.lst").number == Err.FILE_NOT_FOUND
    assert read(fs, "/blockdir/up") == MENU
    assert read(fs, "/leafdir/../boot/grub/menu.lst") == MENU


def test_symlink_chains() -> None:
    """PVGRUB.md §4: xfs follows up to 8 symlinks (fsys_xfs.c:27 MAX_LINK_COUNT, :554): a chain of 8 resolves,
    9 or a loop -> Error 26; relative targets start in the link's directory (:567)."""
    fs = fs_of("v4")
    assert xfs.MAX_LINK_COUNT == 8
    assert read(fs, "/links/c1") == b"target one\n"
    assert read(fs, "/links/d2") == b"target one\n"  # 8 links
    assert grub_error(fs, "/links/d1").number == Err.SYMLINK_LOOP  # 9 links
    assert grub_error(fs, "/links/loop-a").number == Err.SYMLINK_LOOP
    assert read(fs, "/boot/vmlinuz") == image("v4").files["/boot/vmlinuz-5.10.0-pv"]
    assert read(fs, "/boot/initrd.img") == image("v4").files["/boot/initrd.img-5.10.0-pv"]


def test_second_symlink_overwrites_the_rest_of_the_path() -> None:
    """Derived, fsys_xfs.c:543,561,568: the target is read into `linkbuf` while `dirname` still points into
    linkbuf (after the first link), and the rest is then copied forward from that pointer. /links/m1 -> "m2",
    m2 -> "/boot/grub/menu.lst": the 19-byte target overwrites the path after "m2", the copy then repeats
    "oot/grub/menu.lst" up to the buffer end, and GRUB looks for "menu.lstoot" (Error 15). m2 alone works."""
    fs = fs_of("v4")
    err = grub_error(fs, "/links/m1")
    assert err.number == Err.FILE_NOT_FOUND and "menu.lstoot" in err.detail
    assert read(fs, "/links/m2") == MENU


def test_symlink_length_limits() -> None:
    """fsys_xfs.c:558: a target of bsize-1 bytes or more -> Error 14 (a 1023-byte target, 1 KiB blocks);
    a 199-byte target is stored in an extent (remote symlink) and read with xfs_read (:561)."""
    fs = fs_of("v4-1k")
    assert grub_error(fs, "/links/long").number == Err.FILELENGTH
    assert core(image("v4-1k"), "/links/remote")[5] == 2  # extent format
    assert read(fs, "/links/remote") == MENU


# --- extents and btrees (v4-1k surgery files) ------------------------------------------------------------
def test_multi_extent_file() -> None:
    """fsys_xfs.c:232-234, 487-534: an extent-format file of 6 extents in swapped physical order reads as xfs_db
    maps it (xfs_db bmap + raw blocks)."""
    img = image("v4-1k")
    assert len(bmap(img.fs_path, "/geo/multi")) == 6 and core(img, "/geo/multi")[5] == 2
    assert read(fs_of("v4-1k"), "/geo/multi") == linux_view(img.fs_path, "/geo/multi")


@pytest.mark.parametrize(("path", "levels", "records"), [("/geo/btree1", 1, 300), ("/geo/btree2", 2, 700)])
def test_btree_files(path: str, levels: int, records: int) -> None:
    """fsys_xfs.c:236-251, 264-279: btree-format files: descend along the first pointer (the node pointer at
    btnode_ptr0_off, :248, for a 2-level tree), walk the leaves by right sibling; the records GRUB walks are
    the ones xfs_db maps, and the content matches."""
    img = image("v4-1k")
    raw = core(img, path)
    assert raw[5] == 3 and struct.unpack(">H", raw[100:102])[0] == levels
    fs = fs_of("v4-1k")
    f = fs.open(path)
    assert [(o, s, n) for o, s, n, _ in bmap(img.fs_path, path)] == f.extents()
    assert len(f.extents()) == records
    assert f.read(0, f.size) == linux_view(img.fs_path, path)
    assert not f.sparse


def test_hole_is_misread() -> None:
    """Derived, fsys_xfs.c:520-528: a hole is zero-filled from the end of the previous extent and the loop then
    `continue`s past the extent after the hole, so one xfs_read call returns the data before the hole, the
    hole's zeros, and stops. A call that starts inside the later extent reads it right."""
    img = image("v4-1k")
    fs = fs_of("v4-1k")
    want = linux_view(img.fs_path, "/geo/holes")
    f = fs.open("/geo/holes")
    assert f.sparse and f.size == 10 * 1024
    got = f.read(0, f.size)
    assert got == want[:6 * 1024] and len(got) == 6 * 1024 < len(want)
    assert f.read(6 * 1024, 4096) == want[6 * 1024:]


def test_size_past_last_extent_reads_short() -> None:
    """fsys_xfs.c:504,533: xfs_read stops when the extent list ends; the file size is not checked."""
    img = image("v4-1k")
    f = fs_of("v4-1k").open("/geo/tail")
    assert f.size == 8192 and f.read(0, f.size) == linux_view(img.fs_path, "/geo/tail")[:4096]


def test_unwritten_extent_is_read_as_data() -> None:
    """fsys_xfs.c:145-146 xt_offset masks off the extent flag (l0 bit 31) and nothing else looks at it: an
    unwritten (preallocated) extent is read from disk, where Linux returns zeros."""
    img = image("v4-1k")
    got = read(fs_of("v4-1k"), "/geo/unwritten")
    assert got != linux_view(img.fs_path, "/geo/unwritten")
    assert got == img.files["/geo/unwritten"][:2048] + _raw_blocks(img, "/geo/unwritten", 2, 2)


def _raw_blocks(img: XfsImage, path: str, fileblock: int, count: int) -> bytes:
    geo = Geometry.read(img.fs_path)
    for off, start, n, _ in bmap(img.fs_path, path):
        if off <= fileblock < off + n:
            with open(img.fs_path, "rb") as fh:
                fh.seek(geo.fsb_offset(start + fileblock - off))
                return fh.read(count * geo.bsize)
    raise KeyError(path)


def test_btree_root_with_attribute_fork_is_misread() -> None:
    """Derived, fsys_xfs.c:193-199: btroot_maxrecs takes `di_forkoff << 3` and subtracts the inode core too,
    so with an attribute fork at forkoff 15 GRUB looks for the first btree pointer at key slot 1 instead of
    after the 7 key slots Linux uses. Here the pointer lands on a metadata block and the descent runs off
    the partition and then repeats the failed read forever (a hang, reported with GRUB's Error 24)."""
    img = image("v4-1k")
    assert core(img, "/geo/attrbtree")[82] == 15 and len(linux_view(img.fs_path, "/geo/attrbtree")) == 300 * 1024
    err = grub_error_read(fs_of("v4-1k"), "/geo/attrbtree")
    assert err.code == "xfs-hang" and err.number == Err.OUTSIDE_PART


def grub_error_read(fs: XfsFilesystem, path: str) -> GrubError:
    with pytest.raises(GrubError) as info:
        f = fs.open(path)
        f.read(0, f.size)
    return info.value


def test_directory_blocks_of_several_fs_blocks() -> None:
    """fsys_xfs.c:380-383, 472: dirbsize = bsize << sb_dirblklog (4 KiB directory blocks of 1 KiB fs blocks);
    the leaf block number is (1 << 35) >> blklog (:431)."""
    fs = fs_of("v4-1k")
    assert fs.dirbsize == 4096 and fs.bsize == 1024
    for path in ("/blockdir/e099", "/leafdir/leaf-entry-0399", NODE.format(1499), NODE.format(0)):
        fs.open(path)
    assert read(fs, NODE.format(1499)) == b"last\n"


# --- partitions, bounds, robustness ---------------------------------------------------------------------
@pytest.mark.parametrize("part", [0, 1])
def test_xfs_in_mbr_partition_ignores_type(part: int) -> None:
    """PVGRUB.md §4: xfs ignores the MBR partition type (xfs_mount has no current_slice test): partition 1
    (type 0x83) and partition 2 (type 0x07) both mount; the whole disk (sector 0 = MBR) does not."""
    img = image("mbr-v4")
    vol = img.volume(part)
    assert vol.part_type == (0x83, 0x07)[part]
    fs = fs_of("mbr-v4", part)
    assert read(fs, "/boot/grub/menu.lst") == MENU
    assert read(fs, "/boot/vmlinuz") == img.files["/boot/vmlinuz-5.10.0-pv"]
    assert fs.identity.uuid == UUID
    disk = Disk(img.path)
    assert xfs.mount(Volume(disk, 0, disk.size)) is None


def test_reads_outside_partition_are_error_24() -> None:
    """disk_io.c:309-316 devread: a block past the end of the partition -> Error 24."""
    img = image("v4")
    disk = Disk(img.fs_path)
    geo = Geometry.read(img.fs_path)
    start = bmap(img.fs_path, "/boot/initrd.img-5.10.0-pv")[0][1]
    vol = Volume(disk, 0, geo.fsb_offset(start) + 4096)  # the partition ends inside the file's first extent
    fs = xfs.mount(vol)
    assert fs is not None
    f = fs.open("/boot/initrd.img-5.10.0-pv")
    assert f.read(0, 4096) == img.files["/boot/initrd.img-5.10.0-pv"][:4096]
    with pytest.raises(GrubError) as info:
        f.read(0, f.size)
    assert info.value.number == Err.OUTSIDE_PART


def test_btree_cycle_is_a_hang_in_bounded_time() -> None:
    """fsys_xfs.c:238-250: init_extents descends `for (;;)` until a level-0 block; a node block whose first
    pointer is itself loops forever in GRUB. The emulator detects the repeat: Error 16, code xfs-hang."""
    img = image("v4-1k")
    data = bytearray(img.fs_path.read_bytes())
    geo = Geometry.read(img.fs_path)
    raw = core(img, "/geo/btree2")
    node = struct.unpack(">Q", raw[100 + 4 + 9 * 8:100 + 4 + 10 * 8])[0]  # the root's only pointer
    nodemax = (geo.bsize - 24) // 16
    off = geo.fsb_offset(node) + 24 + nodemax * 8
    data[off:off + 8] = node.to_bytes(8, "big")
    fs = xfs.mount(Volume(MemoryDisk(bytes(data)), 0, len(data)))
    assert fs is not None
    err = grub_error_read(fs, "/geo/btree2")
    assert err.number == Err.FSYS_CORRUPT and err.code == "xfs-hang"


def test_step_limit_bounds_work() -> None:
    """Bounded emulation: work beyond `step_limit` is reported as a hang (Error 16, code xfs-hang)."""
    fs = xfs.mount(image("v4").volume())
    assert fs is not None
    fs.step_limit = 2000
    err = grub_error(fs, NODE.format(2999))
    assert err.code == "xfs-hang"


def test_i386_build_differs_only_in_size_t() -> None:
    """fsys_xfs.c:197: btroot_maxrecs computes in size_t; the i386 PV-GRUB reads the same files."""
    fs = xfs.mount(image("v4-1k").volume(), arch="i386")
    assert fs is not None and read(fs, "/geo/btree2") == linux_view(image("v4-1k").fs_path, "/geo/btree2")
    with pytest.raises(ValueError):
        xfs.mount(image("v4-1k").volume(), arch="arm")


def test_small_fork_offset_crashes_the_i386_build() -> None:
    """Derived, fsys_xfs.c:193-199, 218: with an attribute fork at di_forkoff < 13, (forkoff*8 - 104) is
    negative; in the i386 build's 32-bit size_t btroot_maxrecs is then ~2^28 and di_read loads xfs.ptr0 ~2 GiB
    past the inode, for every inode format: PV-GRUB faults. The x86_64 build reads inside the inode (harmless
    unless the inode is a btree). Linux allows fork offsets down to 7 (room for 3 btree pointers)."""
    img = image("v4")
    data = bytearray(img.fs_path.read_bytes())
    geo = Geometry.read(img.fs_path)
    off = geo.ino_offset(inode_number(img.fs_path, "/boot/grub/menu.lst"))
    data[off + 82] = 10  # di_forkoff: an 80-byte data fork, an attribute fork after it
    for arch, ok in (("x86_64", True), ("i386", False)):
        fs = xfs.mount(Volume(MemoryDisk(bytes(data)), 0, len(data)), arch=arch)
        assert fs is not None
        if ok:
            assert read(fs, "/boot/grub/menu.lst") == MENU
        else:
            err = grub_error(fs, "/boot/grub/menu.lst")
            assert err.number == Err.FSYS_CORRUPT and err.code == "xfs-undefined" and "crashes" in err.detail
