"""The JFS reader (fs/jfs.py) on real images: mkfs.jfs, files written by Linux's jfs driver
(tests/fixtures_reiserfs_jfs.py), read as fsys_jfs.c reads them."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from pvbuild.pvgrub.blockio import Disk, MemoryDisk, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs import jfs
from tests.fixtures_reiserfs_jfs import DEEP, LONG_NAME, MANY, image, sparse_content, sparse_images, tree
from tests.imagebuild import Fs, Part
from tests.test_machine import MENU, boot_files, check, codes, mbr


@cache
def img() -> Path:
    return image("jfs", boot_files())


def mounted(path: Path | None = None) -> jfs.JfsFilesystem:
    disk = Disk(path or img())
    fs = jfs.mount(Volume(disk, 0, disk.size))
    assert fs is not None
    return fs


def read(fs: jfs.JfsFilesystem, path: str) -> bytes:
    f = fs.open(path)
    data = f.read(0, f.size)
    assert len(data) == f.size
    return data


def grub_error(fs: jfs.JfsFilesystem, path: str) -> GrubError:
    with pytest.raises(GrubError) as e:
        fs.open(path)
    return e.value


def test_every_file_reads_byte_for_byte() -> None:
    """fsys_jfs.c:273 jfs_dir + :228 jfs_read: inline dtree roots, a 600-name directory whose dtree has split
    into pages (first_dentry descends to the leftmost leaf, next_dentry follows `next`), 12 levels of
    directories, a 255-character name (11 characters in the entry, the rest in 15-character dtslots), a 3 MiB
    file (xtree extents), an empty file."""
    fs = mounted()
    files = {p: c for p, c in tree(boot_files()).items() if isinstance(c, bytes) and "\u00e9" not in p}
    assert len(files) > MANY
    for path, content in files.items():
        assert read(fs, path) == content, path
    assert fs.open("/empty").size == 0
    assert read(fs, f"{DEEP}/deep.txt") == b"at the bottom\n"
    assert read(fs, f"/long/{LONG_NAME}") == b"long name\n"


def test_many_names_split_the_dtree() -> None:
    """The 600-name directory is not an inline dtree: its root in the inode is an internal node (BT_LEAF clear),
    so the lookup reads dtree pages."""
    fs = mounted()
    run = fs._mounted.clone()
    assert run.jfs_dir(b"/many/")is False  # the trailing '/' leaves an empty name: nothing matches (Error 15)
    assert run.dttype == jfs.DTTYPE_PAGE
    run = fs._mounted.clone()
    assert run.jfs_dir(b"/d1/")is False
    assert run.dttype == jfs.DTTYPE_INLINE


def test_non_ascii_names_read_as_question_marks() -> None:
    """uni2ansi (:200-204): a UTF-16 character >= 0x80 becomes '?'. Linux's jfs without iocharset= stores each
    byte of the UTF-8 name "café" as one character, so GRUB finds the file only as "/caf??"."""
    fs = mounted()
    assert read(fs, "/caf??") == b"non-ASCII name\n"
    for path in ("/caf\u00e9", "/caf?"):
        e = grub_error(fs, path)
        assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found")


def test_reads_at_offsets() -> None:
    fs = mounted()
    big = tree(boot_files())["/big.bin"]
    assert isinstance(big, bytes)
    f = fs.open("/big.bin")
    for off, n in ((0, 10), (4090, 20), (1 << 20, 5000), (len(big) - 3, 100)):
        assert f.read(off, n) == big[off:off + n]


def test_symlinks() -> None:
    """:291-313: fast symlinks from the inode, relative from the directory holding the link, absolute from the
    root inode; MAX_LINK_COUNT = 8 (the 9th link is Error 26); a loop is Error 26.

    GRUB's overlap bug (l.297-309): from the second link on, the rest of the path lives in linkbuf, and the new
    target is written over it before the rest is appended. /cK -> ... -> c9 -> "small.txt": when c9 is reached
    the rest ("", at linkbuf+2) has been overwritten by "small.txt", so the copy appends "all.txt" to itself
    until the 4 KiB buffer is full: Error 15, where Linux would open /small.txt."""
    fs = mounted()
    t = tree(boot_files())
    kernel = next(c for p, c in t.items() if p.startswith("/boot/vmlinuz-"))
    assert read(fs, "/boot/vmlinuz") == kernel
    assert read(fs, "/abs") == t["/small.txt"]
    assert read(fs, "/d1/up") == t["/tail.bin"]
    assert read(fs, "/dirlink/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/deep.txt") == b"at the bottom\n"
    for path in ("/c2", "/c8"):
        e = grub_error(fs, path)
        assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found"), e
        assert "small.txtall.txtall.tx" in e.detail
    for path in ("/c1", "/loop1"):
        e = grub_error(fs, path)
        assert (e.number, e.code) == (Err.SYMLINK_LOOP, "symlink-loop"), e


def test_lookup_failures() -> None:
    fs = mounted()
    for path, number, code in (("/nope", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/many/entry-9999", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/d1", Err.BAD_FILETYPE, "bad-file-type"),
                               ("/small.txt/x", Err.BAD_FILETYPE, "bad-file-type"),
                               ("/d1/", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/d1/..", Err.BAD_FILETYPE, "bad-file-type")):
        e = grub_error(fs, path)
        assert (e.number, e.code) == (number, code), (path, e)
    assert read(fs, "/d1/../small.txt") == tree(boot_files())["/small.txt"]  # de_always ".." (:55-58, :154)


def test_check_image_boots() -> None:
    r = check(img())
    assert r["outcome"] == "boots", r["findings"]
    assert "fs-unsupported" not in codes(r)


def test_empty_filesystem_and_mount_checks() -> None:
    """jfs_mount (:207-225): a fresh mkfs.jfs mounts, a missing file is Error 15; a volume under MINJFS
    (16 MiB) or without "JFS1" does not mount."""
    from tests.test_fs_probe import image as probe_image
    from tests.test_fs_probe import volume

    vol = volume(probe_image("jfs"))
    fs = jfs.mount(vol)
    assert fs is not None and fs.identity.fstype == "jfs"
    e = grub_error(fs, "/boot/grub/menu.lst")
    assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found")
    data = bytearray(probe_image("jfs").read_bytes()[:32 << 20])
    assert jfs.mount(Volume(MemoryDisk(bytes(data[:(16 << 20) - 512])), 0, (16 << 20) - 512)) is None
    data[0x8000:0x8004] = b"JFS2"
    assert jfs.mount(Volume(MemoryDisk(bytes(data)), 0, len(data))) is None


def test_boot_partition_of_any_type() -> None:
    """jfs_mount (:207-225) does not look at the partition type (PVGRUB.md §4): /boot on (hd0,0) of MBR type 0x07
    boots with the hd00 profile, which reads (hd0,0)/boot/grub/menu.lst."""
    files = boot_files(MENU.replace(b"root (hd0)", b"root (hd0,0)"))
    image_path = mbr([Part(Fs.of(files, fstype="jfs", options=()), type="7", size_mb=48)])
    r = check(image_path, "1.05", "hd00")
    assert r["outcome"] == "boots", r["findings"]
    assert r["menu"]["device"] == "(hd0,0)"


def test_holes_and_the_second_xtree_leaf() -> None:
    """/sparse.bin: 300 one-block extents with a hole after each, written by Linux with pwrite. Its xtree root is
    an internal node (first_extent descends, :74-83) over two leaf pages (254 + 46 extents). Holes read as
    zeros (:255-263). GRUB's next_extent returns the *second* entry of the next leaf page (:97-101), so the
    first extent of page 2 (file block 508) is skipped, and jfs_read zero-fills over it: PV-GRUB loads 4 KiB of
    zeros where the file has data. The emulator does the same."""
    path = sparse_images()[1]
    disk = Disk(path)
    fs = jfs.mount(Volume(disk, 0, disk.size))
    assert fs is not None
    f = fs.open("/sparse.bin")
    run = f._run.clone()
    run.first_extent(jfs.INODE)
    assert run.b(jfs.INODE + jfs.BTROOT + 16) & jfs.BT_LEAF == 0 and run.xlastindex == 2 + 254
    want = sparse_content()
    got = f.read(0, f.size)
    assert len(got) == len(want) == f.size
    lost = 508 * 4096
    assert got[lost:lost + 4096] == bytes(4096) != want[lost:lost + 4096]
    assert got[:lost] == want[:lost] and got[lost + 4096:] == want[lost + 4096:]


def test_long_symlinks() -> None:
    """:296-306. Linux keeps a symlink of up to 255 bytes in the inode, spilling into the inline EA area and then
    clearing INLINEEA when it is longer than 127 bytes (fs/jfs/namei.c jfs_symlink). GRUB takes only INLINEEA set
    to mean "up to 255 bytes inline", so it reads such a 149-byte link with jfs_read as if the inode held an
    xtree: the root header Linux left there says "leaf, no entries", the link text is taken for an extent far
    beyond the file, nothing is read and the target is empty. The lookup goes on with the rest of the path ("")
    from the root (linkbuf[0] is stack garbage, but the link is in the root, so both branches agree): the root is
    a directory, not a file: Error 2 where Linux opens /small.txt. A 1029-byte target lives in a data block and
    is followed; the longest target Linux allows (4095 bytes) is Error 14."""
    fs = mounted()
    e = grub_error(fs, "/link149")
    assert (e.number, e.code) == (Err.BAD_FILETYPE, "bad-file-type"), e
    assert read(fs, "/link1029") == tree(boot_files())["/small.txt"]
    e = grub_error(fs, "/link4095")
    assert (e.number, e.code) == (Err.FILELENGTH, "fs-symlink-too-long"), e
