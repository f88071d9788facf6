"""PV-GRUB's ext2/3/4 driver (fsys_ext2fs.c with Xen patches 40 and 60) on images made by the real e2fsprogs.

Every test names the rule it checks: a PVGRUB.md section and the line of the patched reference
`stage2/fsys_ext2fs.c` (or disk_io.c / pc_slice.h) the behaviour comes from.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from functools import cache
from pathlib import Path

import pytest

from pvbuild.pvgrub.blockio import Disk, MemoryDisk, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs.base import Filesystem
from pvbuild.pvgrub.fs.ext2 import Ext2Filesystem, identify, mount
from tests.fixtures_ext import KINDS, LABEL, UUID, ExtImage, blkid, build_ext_image, debugfs, tool, tree_files

WHOLE_DISK_KINDS = [k for k, s in KINDS.items() if s.part_type is None]
READABLE_KINDS = ["ext2", "ext3", "ext4", "ext4-1k", "ext4-inode1024", "mbr-83", "mbr-fd"]
EXTENT_KINDS = {"ext4", "ext4-1k", "ext4-frag", "ext4-inode1024", "ext4-metabg", "ext4-inline", "mbr-83", "mbr-fd"}


@cache
def image(kind: str) -> ExtImage:
    return build_ext_image(kind)


@cache
def fs_of(kind: str) -> Ext2Filesystem:
    fs = mount(image(kind).volume())
    assert fs is not None, kind
    return fs


def grub_error(fs: Filesystem, path: str) -> GrubError:
    with pytest.raises(GrubError) as info:
        fs.open(path)
    return info.value


def leaf_extents(img: ExtImage, path: str) -> list[tuple[int, int, int]]:
    """(logical start, physical start, length) of every leaf extent, from debugfs `ex`."""
    out = []
    for line in debugfs(img, f"ex {path}").splitlines():
        m = re.match(r"\s*(\d+)/\s*(\d+)\s+\d+/\s*\d+\s+(\d+)\s*-\s*(\d+)\s+(\d+)\s*-\s*(\d+)\s+(\d+)", line)
        if m and m.group(1) == m.group(2):
            out.append((int(m.group(3)), int(m.group(5)), int(m.group(7))))
    return out


def extent_depth(img: ExtImage, path: str) -> int:
    for line in debugfs(img, f"ex {path}").splitlines():
        m = re.match(r"\s*\d+/\s*(\d+)\s", line)
        if m:
            return int(m.group(1))
    return -1


def block_size(img: ExtImage) -> int:
    return fs_of(img.kind).block_size


# ---------------------------------------------------------------------------------------------------------------
# mount / identity


@pytest.mark.parametrize("kind", WHOLE_DISK_KINDS)
def test_mount_whole_disk(kind: str) -> None:
    """PVGRUB.md §4 "ext2fs mounts only on whole disk or MBR type 0x83/0xFD": a whole disk (current_slice 0) is
    always allowed (fsys_ext2fs.c:417 after patch 50fs_fulldisk), and only the magic is checked (:425)."""
    fs = mount(image(kind).volume())
    assert isinstance(fs, Ext2Filesystem)
    assert fs.grub_name == "ext2fs"


@pytest.mark.parametrize(("kind", "mounts"), [("mbr-83", True), ("mbr-fd", True), ("mbr-8e", False),
                                              ("mbr-07", False)])
def test_mount_partition_type(kind: str, mounts: bool) -> None:
    """PVGRUB.md §4: an MBR partition mounts only with type 0x83 (PC_SLICE_TYPE_EXT2FS, pc_slice.h:114) or 0xFD
    (PC_SLICE_TYPE_LINUX_RAID, pc_slice.h:118) -- fsys_ext2fs.c:417-421. The type byte comes from sfdisk's MBR;
    blkid-style identify() ignores it (root=UUID= still resolves under Linux)."""
    img = image(kind)
    mbr = img.path.read_bytes()[:512]
    assert mbr[510:512] == b"\x55\xaa" and mbr[446 + 4] == img.part_type
    assert struct.unpack_from("<I", mbr, 446 + 8)[0] * 512 == img.offset
    vol = img.volume()
    assert (mount(vol) is not None) is mounts
    ident = identify(vol)
    assert ident is not None and ident.fstype == "ext4" and ident.uuid == UUID and ident.label == LABEL
    # The same partition without an MBR type (whole disk or GPT) is always allowed.
    assert mount(Volume(vol.disk, vol.start, vol.length, None, "(hd0,0)")) is not None
    # The partitioned disk as a whole has no superblock at byte 1024.
    assert mount(img.disk_volume()) is None


def test_mount_only_checks_magic_and_size() -> None:
    """PVGRUB.md §5 (ext2fs probe): fsys_ext2fs.c:422-425: part_length < 4 sectors or a bad s_magic -> 0; nothing else
    in the superblock is validated at mount time (a superblock of zeros plus the magic mounts)."""
    sb = bytearray(4096)
    assert mount(Volume(MemoryDisk(bytes(sb)), 0, 4096)) is None
    struct.pack_into("<H", sb, 1024 + 0x38, 0xEF53)
    assert mount(Volume(MemoryDisk(bytes(sb)), 0, 4096)) is not None
    assert mount(Volume(MemoryDisk(bytes(sb)), 0, 2047)) is None  # 3 sectors < SBLOCK + 2
    assert mount(Volume(MemoryDisk(bytes(sb)), 0, 2048)) is not None


@pytest.mark.parametrize("kind", [*WHOLE_DISK_KINDS, "mbr-83", "mbr-07"])
def test_identity_matches_blkid_and_dumpe2fs(kind: str) -> None:
    """PVGRUB.md §6 root=LABEL=/UUID=: identify() must agree with `blkid -p` (TYPE, UUID, LABEL) and list the
    features as dumpe2fs names them (has_journal -> ext3, ext4-only features -> ext4)."""
    img = image(kind)
    ident = identify(img.volume())
    assert ident is not None
    ref = blkid(img)
    assert ident.fstype == ref["TYPE"]
    assert ident.uuid == ref["UUID"] == UUID
    assert ident.label == ref["LABEL"] == LABEL
    if img.offset == 0:
        out = subprocess.run([tool("dumpe2fs"), "-h", str(img.path)], capture_output=True, text=True, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("Filesystem features:"))
        assert ident.features == tuple(line.split(":", 1)[1].split())
    expected = img.spec.mkfs.removeprefix("mkfs.")  # what mkfs was asked to make
    assert ident.fstype == expected


def test_identify_rejects_bad_superblock_checksum() -> None:
    """PVGRUB.md §6 root=UUID= / §5 "metadata_csum alone harmless": blkid checks the metadata_csum superblock checksum
    (crc32c) and then does not report the filesystem, but GRUB's mount (fsys_ext2fs.c:417-426) ignores checksums:
    mount works, identify() returns None."""
    img = image("ext4")
    data = bytearray(img.path.read_bytes()[:1 << 20])
    data[1024 + 0x78] ^= 0x20  # change the label, keep the stale checksum
    vol = Volume(MemoryDisk(bytes(data)), 0, len(data))
    assert identify(vol) is None
    fs = mount(vol)
    assert fs is not None and "superblock_checksum_bad" in fs.identity.features
    assert identify(image("ext4").volume()) is not None


def test_findings() -> None:
    """PVGRUB.md §5: 64bit always fails (error); meta_bg and inline_data are misread (warnings)."""
    assert fs_of("ext4").findings() == []
    assert [f.code for f in fs_of("ext4-64bit").findings()] == ["fs-64bit"]
    assert fs_of("ext4-64bit").findings()[0].severity == "error"
    assert [f.code for f in fs_of("ext4-metabg").findings()] == ["fs-feature-unsupported"]
    assert "meta_bg" in fs_of("ext4-metabg").findings()[0].message
    assert [f.code for f in fs_of("ext4-inline").findings()] == ["fs-feature-unsupported"]


# ---------------------------------------------------------------------------------------------------------------
# reading files


@pytest.mark.parametrize("kind", READABLE_KINDS)
def test_every_file_reads_back(kind: str) -> None:
    """PVGRUB.md §5 "ext2/3/4: any inode size (patch 40); extents, flex_bg, huge_file, s_desc_size (patch 60)":
    every regular file written by mkfs -d reads back byte for byte through the emulated lookup (fsys_ext2fs.c
    ext2fs_dir :778-1097) and read (ext2fs_read :666-737), block maps (:447-547) or extents (:594-663)."""
    fs = fs_of(kind)
    files = tree_files(image(kind).tree)
    for path, content in files.items():
        if path.startswith("/many/") or path == "/boot/tind":
            continue
        if path == "/sparse" and kind in EXTENT_KINDS:
            continue  # holes in extent files: see test_extent_holes_are_misread
        f = fs.open(path)
        assert f.size == len(content), path
        assert f.read(0, f.size) == content, path


@pytest.mark.parametrize("kind", ["ext2", "ext3", "ext4", "ext4-1k"])
def test_htree_directory_is_scanned_linearly(kind: str) -> None:
    """PVGRUB.md §5: GRUB reads a directory linearly (fsys_ext2fs.c:1004-1091, loc += rec_len): an htree-indexed
    directory (2000 entries, e2fsck -D) still works because index blocks look like entries with inode 0."""
    img = image(kind)
    assert "Root node dump" in debugfs(img, "htree /many")
    fs = fs_of(kind)
    files = tree_files(img.tree)
    for i in [*range(0, 2000, 137), 1999]:
        path = f"/many/file-{i:04d}"
        assert fs.open(path).read(0, 100) == files[path]
    assert grub_error(fs, "/many/file-2000").number == Err.FILE_NOT_FOUND


@pytest.mark.parametrize(("kind", "inode_size"), [("ext2", 128), ("ext4-1k", 128), ("ext3", 256), ("ext4", 256),
                                                  ("ext4-inode1024", 1024)])
def test_any_inode_size(kind: str, inode_size: int) -> None:
    """PVGRUB.md §5 "any inode size (patch 40)": Patch 40ext3_256byte_inode: the inode stride is s_inode_size
    (fsys_ext2fs.c:362-363, 842-844, 856-858)."""
    fs = fs_of(kind)
    assert fs.sb.inode_size == inode_size
    assert fs.open("/boot/grub/menu.lst").read(0, 1 << 16) == tree_files(image(kind).tree)["/boot/grub/menu.lst"]


def test_ext2_indirect_blocks() -> None:
    """PVGRUB.md §5 (ext2/3 block-mapped files): ext2 block maps (fsys_ext2fs.c:447-547): with 1 KiB blocks a 600 KiB
    file needs the double-indirect block (:497-518); a 70 MiB sparse file reaches the triple-indirect one
    (:520-546); holes (block 0) read as zeros (ext2fs_read :716-717)."""
    img = image("ext2")
    fs = fs_of("ext2")
    assert fs.block_size == 1024
    assert "(DIND)" in debugfs(img, "stat /boot/vmlinuz")
    assert "(TIND)" in debugfs(img, "stat /boot/tind")
    files = tree_files(img.tree)
    assert fs.open("/boot/vmlinuz").read(0, 1 << 20) == files["/boot/vmlinuz"]
    f = fs.open("/boot/tind")
    tind = files["/boot/tind"]
    assert f.size == len(tind)
    for off in (0, 20 << 20, 70 << 20):
        assert f.read(off, 4096) == tind[off:off + 4096]
    assert f.read(10 << 20, 4096) == bytes(4096)
    assert f.read(f.size - 100, 1000) == tind[-100:]


def test_extent_tree_depth_one_without_holes() -> None:
    """PVGRUB.md §5 "extents (patch 60)": Patch 60 ext4fs_block_map (fsys_ext2fs.c:594-663): an index level (:628-647,
    eh_depth != 0) then a leaf binary search (:650); a 6 MiB file split in 8 extents (1 MiB groups, no flex_bg)
    reads back exactly."""
    img = image("ext4-frag")
    assert extent_depth(img, "/boot/vmlinuz") == 1
    assert len(leaf_extents(img, "/boot/vmlinuz")) > 4
    content = tree_files(img.tree)["/boot/vmlinuz"]
    f = fs_of("ext4-frag").open("/boot/vmlinuz")
    assert f.read(0, f.size) == content
    for off in (1023, 939 * 1024 - 5, 3 << 20):
        assert f.read(off, 4000) == content[off:off + 4000]


@pytest.mark.parametrize(("kind", "depth"), [("ext4-1k", 2), ("ext4", 1)])
def test_extent_tree_data_blocks(kind: str, depth: int) -> None:
    """PVGRUB.md §5 "extents (patch 60)": fsys_ext2fs.c:628-661: a 400-extent file (a hole after each 4 KiB of data)
    has a depth-2 tree with 1 KiB blocks, depth 1 with 4 KiB; every data run is found through the index levels."""
    img = image(kind)
    assert extent_depth(img, "/sparse") == depth
    content = tree_files(img.tree)["/sparse"]
    f = fs_of(kind).open("/sparse")
    for k in range(0, 400, 7):
        off = k * 8192
        assert f.read(off, 4096) == content[off:off + 4096]


def test_extent_holes_are_misread() -> None:
    """PVGRUB.md §5 "extents (patch 60)", derived: GRUB's extent lookup ignores holes (fsys_ext2fs.c:656-661 checks
    `ee_block + ee_len < lb`): the block just after an extent maps to the physical block after it (here: the next
    data run, not zeros), a block further into the hole is Error 16. mke2fs -d turns every all-zero block into a
    hole, so this bites real images. Block-mapped files read holes as zeros (ext2fs_read :716-717)."""
    img = image("ext4-1k")
    bs = block_size(img)
    exts = leaf_extents(img, "/sparse")
    logical, physical, length = exts[0]
    assert logical == 0 and length == 4096 // bs
    f = fs_of("ext4-1k").open("/sparse")
    raw = img.path.read_bytes()
    after = (physical + length) * bs
    assert f.read(length * bs, 64) == raw[after:after + 64]
    assert f.read(length * bs, 64) != bytes(64)
    with pytest.raises(GrubError) as info:
        f.read((length + 1) * bs, 16)
    err = info.value
    assert err.number == Err.FSYS_CORRUPT and err.code == "file-sparse"
    # ext3 (block map): the same file's holes are zeros
    g = fs_of("ext3").open("/sparse")
    assert g.read(4096, 4096) == bytes(4096)
    assert g.read(0, 8192) == tree_files("standard")["/sparse"][:8192]


def test_read_is_random_access_and_bounded() -> None:
    """PVGRUB.md §4-5 (file reads): grub_read clips to filemax (disk_io.c:1661-1666); ext2fs_read maps only the blocks
    it needs (fsys_ext2fs.c:694-731): a small read far into a file touches a few blocks, not the file."""
    img = image("ext4")
    fs = fs_of("ext4")
    content = tree_files(img.tree)["/boot/vmlinuz"]
    f = fs.open("/boot/vmlinuz")
    disk = fs.vol.disk
    before = disk.bytes_read
    assert f.read(300_001, 100) == content[300_001:300_101]
    assert disk.bytes_read - before <= 3 * 4096
    assert f.read(f.size, 10) == b""
    assert f.read(-5, 10) == b""
    assert f.read(f.size - 3, 100) == content[-3:]
    assert f.read_all(1 << 20) == content
    with pytest.raises(GrubError) as info:
        f.read_all(1000)
    assert info.value.number == Err.WONT_FIT
    assert fs.open("/boot/empty").read(0, 10) == b""


# ---------------------------------------------------------------------------------------------------------------
# path resolution


@pytest.mark.parametrize("path", ["/boot/grub/menu.lst", "//boot///grub//menu.lst", "/boot/grub/menu.lst  root=x",
                                  "/boot/grub/menu.lst\tx", "/boot/grub/menu.lst\n", "boot/grub/menu.lst",
                                  b"/boot/grub/menu.lst"])
def test_path_forms_that_resolve(path: str) -> None:
    """PVGRUB.md §4 "paths end at whitespace": the lookup stops at NUL or grub_isspace (fsys_ext2fs.c:962,
    996-997; char_io.c:977-991) and skips runs of '/' (:985-986). The leading '/' is checked by grub_open, not by
    the driver (disk_io.c:1568)."""
    assert fs_of("ext4").open(path).read(0, 9) == b"default 0"


@pytest.mark.parametrize(("path", "number", "code"), [
    ("/boot/grub/", Err.FILE_NOT_FOUND, "file-not-found"),  # trailing '/': searches for "" (:1013-1027)
    ("/", Err.FILE_NOT_FOUND, "file-not-found"),
    ("", Err.BAD_FILETYPE, "bad-file-type"),  # the root itself is not a regular file (:964-968)
    ("/boot/grub", Err.BAD_FILETYPE, "bad-file-type"),
    ("/boot/grub/menu.lst/", Err.BAD_FILETYPE, "bad-file-type"),  # not a directory (:989-993)
    ("/boot/grub/menu.lst/x", Err.BAD_FILETYPE, "bad-file-type"),
    ("/boot/empty/x", Err.BAD_FILETYPE, "bad-file-type"),
    ("/Boot/grub/menu.lst", Err.FILE_NOT_FOUND, "file-not-found"),  # names compare exactly (char_io.c:1189)
    ("/boot/grub/menu", Err.FILE_NOT_FOUND, "file-not-found"),  # a prefix is not a match
    ("/emptydir/x", Err.FILE_NOT_FOUND, "file-not-found"),
    ("/nope", Err.FILE_NOT_FOUND, "file-not-found"),
])
def test_path_errors(path: str, number: int, code: str) -> None:
    """PVGRUB.md §4 (paths; error numbers §3): fsys_ext2fs.c ext2fs_dir: a final non-regular file is Error 2
    (:964-968), an intermediate non-directory or empty directory is Error 2 (:989-993), a missing name after
    scanning i_size bytes is Error 15 (:1013-1027)."""
    for kind in ("ext2", "ext4"):
        err = grub_error(fs_of(kind), path)
        assert (err.number, err.code) == (number, code), kind


@pytest.mark.parametrize("kind", ["ext2", "ext3", "ext4", "ext4-1k"])
@pytest.mark.parametrize("path", [
    "/boot/rel-menu",  # relative: from the directory holding the link (:951-955)
    "/boot/abs-menu",  # absolute: from the root (:945-950)
    "/boot/grubdir/menu.lst",  # a link in the middle of the path, the rest is appended (:911-917)
    "/boot/dotdot-menu",
    "/boot/spacey",  # the target ends at whitespace like any path (:962)
    "/boot/to-dir/menu.lst",
    "/boot/boot/grub/menu.lst",  # the `boot -> .` trick of separate /boot filesystems (PVGRUB.md §1)
    "/boot/boot/boot/boot/boot/boot/grub/menu.lst",  # 5 links: the limit
])
def test_symlinks_resolve(kind: str, path: str) -> None:
    """PVGRUB.md §4 "Symlinks: ext2 follows up to 5 ... absolute targets resolve from that filesystem's root":
    fsys_ext2fs.c:889-959."""
    assert fs_of(kind).open(path).read(0, 1000) == tree_files("standard")["/boot/grub/menu.lst"]


@pytest.mark.parametrize("kind", ["ext2", "ext4"])
def test_symlink_limit_and_loops(kind: str) -> None:
    """PVGRUB.md §4 "Symlinks: ext2 follows up to 5": MAX_LINK_COUNT is 5 (fsys_ext2fs.c:342) and `++link_count >
    MAX_LINK_COUNT` (:892) counts every link of one lookup: a chain of 5 resolves, 6 is Error 26, so is a loop;
    absolute links chain too."""
    fs = fs_of(kind)
    assert fs.open("/links/c1").read(0, 100) == b"the end of the chain\n"  # c1..c5: 5 links
    assert fs.open("/links/abs-chain").read(0, 100) == b"the end of the chain\n"  # abs-chain, c2..c5: 5 links
    for path in ("/links/d1", "/links/loop-a", "/boot/boot/boot/boot/boot/boot/boot/grub/menu.lst"):
        err = grub_error(fs, path)
        assert (err.number, err.code) == (Err.SYMLINK_LOOP, "symlink-loop"), path
    err = grub_error(fs, "/boot/dangling")
    assert err.number == Err.FILE_NOT_FOUND
    assert grub_error(fs, "/boot/to-dir").number == Err.BAD_FILETYPE


@pytest.mark.parametrize("kind", ["ext2", "ext4"])
def test_fast_and_slow_symlinks(kind: str) -> None:
    """PVGRUB.md §4 (ext2 symlinks): ext2_is_fast_symlink (fsys_ext2fs.c:763-769): i_blocks == (EA block ? 1 block : 0)
    -> the target is in i_block (:931-938); otherwise it is read through ext2fs_read, block map or extents
    (:923-930)."""
    img = image(kind)
    assert re.search(r"Blockcount: 0\b", debugfs(img, "stat /boot/rel-menu"))
    assert not re.search(r"Blockcount: 0\b", debugfs(img, "stat /links/slow"))
    assert fs_of(kind).open("/links/slow").read(0, 100) == b"reached through a slow symlink\n"


def _copy(img: ExtImage, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.img"
    shutil.copyfile(img.path, dst)
    return dst


def _debugfs_w(path: Path, *requests: str) -> None:
    for req in requests:
        subprocess.run([tool("debugfs"), "-w", "-R", req, str(path)], capture_output=True, text=True, check=True)


def _mount_file(path: Path) -> Ext2Filesystem:
    disk = Disk(path)
    fs = mount(Volume(disk, 0, disk.size))
    assert fs is not None
    return fs


def test_symlink_buffer_limit(tmp_path: Path) -> None:
    """PVGRUB.md §4 (ext2 symlinks), derived: fsys_ext2fs.c:904-909: link size + remaining path > sizeof(linkbuf) - 2 =
    1022 -> Error 14."""
    path = _copy(image("ext4-inode1024"), tmp_path)
    _debugfs_w(path, "symlink /boot/long " + "/boot/grub/" + "x" * 1005)
    fs = _mount_file(path)
    err = grub_error(fs, "/boot/long")  # 1016 bytes: fits, then the name is not found
    assert err.number == Err.FILE_NOT_FOUND
    err = grub_error(fs, "/boot/long/abcdefg")  # 1016 + 8 > 1022
    assert (err.number, err.code) == (Err.FILELENGTH, "fs-symlink-too-long")


# ---------------------------------------------------------------------------------------------------------------
# features PV-GRUB gets wrong


def test_64bit_fails_every_lookup() -> None:
    """PVGRUB.md §5 "INCOMPAT_64BIT always fails": patch 60's check (fsys_ext2fs.c:836-841) fires when
    bg_inode_table_hi is 0, i.e. always, at the first inode (the root): ERR_FILELENGTH and return -1, which
    grub_open takes for success and then fails in gunzip_test_header with errnum still 14 (disk_io.c:1644-1647,
    gunzip.c:279-285). menu.lst is therefore "not found" with Error 14."""
    fs = fs_of("ext4-64bit")
    assert fs.sb.desc_size == 64
    for path in ("/boot/grub/menu.lst", "/boot/vmlinuz", "/nonexistent", "/"):
        err = grub_error(fs, path)
        assert (err.number, err.code) == (Err.FILELENGTH, "fs-64bit"), path
        assert "64bit" in err.detail


def test_64bit_check_is_inverted() -> None:
    """PVGRUB.md §5 "inverted check in patch 60": The patch 60 test is `INCOMPAT_64BIT && !bg_inode_table_hi`
    (fsys_ext2fs.c:836-837): it refuses exactly the normal case. With a non-zero bg_inode_table_hi the lookup goes
    on, using only the low 32 bits (:842) and s_desc_size-spaced descriptors (EXT2_DESC_SIZE :375-379): here the
    files then open."""
    img = image("ext4-64bit")
    fs = fs_of("ext4-64bit")
    assert fs.group_count == 1 and fs.block_size == 4096
    patched = _patched(img, {4096 + 0x28: struct.pack("<I", 1)})  # group 0 descriptor in block 1
    small = tree_files("small")
    assert patched.open("/boot/grub/menu.lst").read(0, 4096) == small["/boot/grub/menu.lst"]
    assert patched.open("/boot/vmlinuz").read(0, 1 << 20) == small["/boot/vmlinuz"]


def test_metadata_csum_flex_bg_huge_file_are_harmless() -> None:
    """PVGRUB.md §5 "metadata_csum alone harmless (derived)": GRUB never looks at checksums, flex_bg only moves
    inode tables that the descriptors point to (:842-844), huge_file only matters with EXT4_HUGE_FILE_FL (:970)."""
    fs = fs_of("ext4")
    for feature in ("metadata_csum", "flex_bg", "huge_file", "extent", "dir_nlink", "extra_isize"):
        assert feature in fs.identity.features
    assert fs.findings() == []
    assert fs.open("/boot/initrd.img").read(0, 1 << 20) == tree_files("standard")["/boot/initrd.img"]


def test_meta_bg_descriptors_are_misread() -> None:
    """PVGRUB.md §5 "meta_bg ... unsupported (derived)": GRUB reads descriptor block n at first_data_block+1+n
    (fsys_ext2fs.c:828-829) while meta_bg keeps it in the meta group's first group: inodes in groups < 32
    (descriptor block 0) open, inodes in later groups fail with code fs-feature-unsupported."""
    img = image("ext4-metabg")
    fs = fs_of("ext4-metabg")
    assert fs.group_count > 32 and fs.sb.first_meta_bg == 0
    listing = debugfs(img, "ls -l /")
    inodes = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+100644.*\s(f\d{3})\s*$", listing, re.M)}
    ipg = fs.sb.inodes_per_group
    early = next(n for n, i in sorted(inodes.items()) if (i - 1) // ipg < 32)
    late = next(n for n, i in sorted(inodes.items()) if (i - 1) // ipg >= 32)
    files = tree_files("metabg")
    assert fs.open(f"/{early}").read(0, 100) == files[f"/{early}"]
    err = grub_error(fs, f"/{late}")
    assert err.code == "fs-feature-unsupported" and "meta_bg" in err.detail


def test_inline_data_is_misread() -> None:
    """PVGRUB.md §5 "inline_data: unsupported (derived)": GRUB knows no EXT4_INLINE_DATA_FL, so the inline bytes
    are taken for block numbers (ext2fs_block_map :472-479): an inline directory is scanned from a bogus block,
    an inline file's first read goes outside the partition (Error 24 via devread, disk_io.c:309-315). A file
    stored in extents in a block-based directory still reads."""
    fs = fs_of("ext4-inline")
    for path in ("/boot/grub/menu.lst", "/small-root", "/boot/small"):
        err = grub_error(fs, path)
        assert "inline_data" in err.detail, path
        assert err.code in ("fs-feature-unsupported", "fs-hang"), path
    assert fs.open("/big").read(0, 1 << 16) == tree_files("small")["/big"]


def test_huge_file_flag(tmp_path: Path) -> None:
    """PVGRUB.md §5 "huge_file (patch 60)": fsys_ext2fs.c:970-975: EXT4_HUGE_FILE_FL with i_size_high 0 -> Error 14."""
    path = _copy(image("ext4-inode1024"), tmp_path)
    _debugfs_w(path, "set_inode_field /boot/small flags 0x40000")
    err = grub_error(_mount_file(path), "/boot/small")
    assert (err.number, err.code) == (Err.FILELENGTH, "fs-huge-file")


def test_block_size_above_8k_overruns_fsys_buf(tmp_path: Path) -> None:
    """PVGRUB.md §5, derived: GRUB keeps superblock + descriptor block + a block read into INODE + DATABLOCK1/2 in
    FSYS_BUF (32 KiB, shared.h:91; fsys_ext2fs.c:346-356): 16 KiB blocks overrun it. mount still succeeds
    (:417-426)."""
    path = tmp_path / "b16.img"
    with open(path, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run([tool("mkfs.ext4"), "-q", "-F", "-b", "16384", "-O", "^64bit", str(path)], capture_output=True,
                   check=True)
    fs = _mount_file(path)
    err = grub_error(fs, "/lost+found")
    assert err.code == "fs-feature-unsupported" and "FSYS_BUF" in err.detail
    assert [f.code for f in fs.findings()] == ["fs-feature-unsupported"]


# ---------------------------------------------------------------------------------------------------------------
# corrupt structures (crafted from real images)


def _imap(img: ExtImage, path: str) -> tuple[int, int]:
    """(block, byte offset) of an inode, from debugfs `imap`."""
    out = debugfs(img, f"imap {path}")
    m = re.search(r"located at block (\d+), offset 0x([0-9a-f]+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2), 16)


def _first_block(img: ExtImage, path: str) -> int:
    return int(debugfs(img, f"blocks {path}").split()[0])


def _patched(img: ExtImage, patches: dict[int, bytes]) -> Ext2Filesystem:
    data = bytearray(img.path.read_bytes())
    for off, val in patches.items():
        data[off:off + len(val)] = val
    fs = mount(Volume(MemoryDisk(bytes(data)), 0, len(data)))
    assert fs is not None
    return fs


def test_rec_len_zero_hangs() -> None:
    """PVGRUB.md §5 (linear directory scan), derived: fsys_ext2fs.c:1060 `loc += dp->rec_len` with rec_len 0 and no
    match rereads the same entry forever: the emulator reports code fs-hang instead of looping."""
    img = image("ext2")
    blk = _first_block(img, "/boot/grub") * 1024
    err = grub_error(_patched(img, {blk + 4: b"\0\0"}), "/boot/grub/menu.lst")
    assert err.code == "fs-hang"


def test_directory_block_outside_partition() -> None:
    """PVGRUB.md §3 error 16 "fs corrupt": fsys_ext2fs.c:1051-1056: a directory block that cannot be read is Error 16
    (devread's Error 24 is overwritten)."""
    img = image("ext2")
    blk, off = _imap(img, "/boot/grub")
    err = grub_error(_patched(img, {blk * 1024 + off + 40: struct.pack("<I", 0x00FFFFFF)}), "/boot/grub/menu.lst")
    assert (err.number, err.code) == (Err.FSYS_CORRUPT, "fs-corrupt")


def test_inode_table_outside_partition() -> None:
    """PVGRUB.md §3 error numbers (24 from devread): fsys_ext2fs.c:848-851: the inode table read fails with devread's
    own errnum, Error 24 (disk_io.c:309-315)."""
    img = image("ext2")
    gdt = 2 * 1024  # 1 KiB blocks: first_data_block 1, descriptors in block 2
    err = grub_error(_patched(img, {gdt + 8: struct.pack("<I", 0x00FFFFF0)}), "/boot/grub/menu.lst")
    assert err.number == Err.OUTSIDE_PART


def test_division_by_zero_is_a_crash() -> None:
    """PVGRUB.md §5, derived: fsys_ext2fs.c:820: s_inodes_per_group 0 divides by zero in PV-GRUB: code fs-crash."""
    img = image("ext2")
    err = grub_error(_patched(img, {1024 + 0x28: b"\0\0\0\0"}), "/boot/grub/menu.lst")
    assert err.code == "fs-crash"


def test_extent_magic_checked() -> None:
    """PVGRUB.md §3 error 16 "fs corrupt": fsys_ext2fs.c:623-627: a bad extent header magic in the inode is Error 16."""
    img = image("ext4")
    blk, off = _imap(img, "/boot/vmlinuz")
    err = grub_error(_patched(img, {blk * 4096 + off + 40: b"\0\0"}), "/boot/vmlinuz")
    assert (err.number, err.code) == (Err.FSYS_CORRUPT, "fs-corrupt")


def test_extent_above_2_32_is_error_14() -> None:
    """PVGRUB.md §5 "extents above 2^32: unsupported": fsys_ext2fs.c:651-655: ee_start_hi != 0 (a block above 2^32) ->
    Error 14, code fs-feature-unsupported."""
    img = image("ext4")
    blk, off = _imap(img, "/boot/vmlinuz")
    assert extent_depth(img, "/boot/vmlinuz") == 0
    err = grub_error(_patched(img, {blk * 4096 + off + 40 + 12 + 6: b"\1\0"}), "/boot/vmlinuz")
    assert (err.number, err.code) == (Err.FILELENGTH, "fs-feature-unsupported")
