"""The ReiserFS reader (fs/reiserfs.py) on real images: mkfs.reiserfs, files written by Linux's reiserfs driver
(tests/fixtures_reiserfs_jfs.py), read as fsys_reiserfs.c reads them.

Populated images are 3.6 only: Linux 6.1 refuses to mount what mkreiserfs 3.6.27 makes with `--format 3.5`
("is_leaf: item entry count seems wrong" in the root directory item, even after reiserfsck --fix-fixable), so the
3.5 format (and JR) is covered by freshly made empty filesystems (test_fs_probe's recipes); 3.6 filesystems use
3.5 (version 1) keys for directories and version 2 keys for files, so both key formats are read here."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from pvbuild.pvgrub.blockio import Disk, MemoryDisk, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs import reiserfs
from tests.fixtures_reiserfs_jfs import DEEP, LONG_NAME, MANY, image, sparse_content, sparse_images, tree
from tests.imagebuild import Fs, Part, Symlink
from tests.test_machine import MENU, boot_files, check, codes, mbr

FORMATS: dict[str, tuple[str, ...]] = {"3.6": ()}


@cache
def img(fmt: str) -> Path:
    return image("reiserfs", boot_files(), FORMATS[fmt])


def mounted(path: Path) -> reiserfs.ReiserFilesystem:
    disk = Disk(path)
    fs = reiserfs.mount(Volume(disk, 0, disk.size))
    assert fs is not None
    return fs


def read(fs: reiserfs.ReiserFilesystem, path: str) -> bytes:
    f = fs.open(path)
    data = f.read(0, f.size)
    assert len(data) == f.size
    return data


def grub_error(fs: reiserfs.ReiserFilesystem, path: str) -> GrubError:
    with pytest.raises(GrubError) as e:
        fs.open(path)
    return e.value


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_file_reads_byte_for_byte(fmt: str) -> None:
    """fsys_reiserfs.c:1001 reiserfs_dir + :893 reiserfs_read: direct items (small files, tails), indirect items
    (3 MiB), an empty file, 600 names in one directory (several leaves: the tree has internal nodes, search_stat
    descends them, next_key walks across leaves), 12 levels of directories, a 255-character name."""
    fs = mounted(img(fmt))
    assert fs.format == fmt
    assert fs.tree_depth >= 2
    files = {p: c for p, c in tree(boot_files()).items() if isinstance(c, bytes)}
    assert len(files) > MANY
    for path, content in files.items():
        assert read(fs, path) == content, path
    assert fs.open("/empty").size == 0
    assert read(fs, f"{DEEP}/deep.txt") == b"at the bottom\n"
    assert read(fs, f"/long/{LONG_NAME}") == b"long name\n"
    assert read(fs, "/caf\u00e9") == b"non-ASCII name\n"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_reads_at_offsets(fmt: str) -> None:
    """reiserfs_read from any filepos: a position before the current item restarts with search_stat (:905-910);
    a read across the indirect part and the tail of a 10000-byte file."""
    fs = mounted(img(fmt))
    content = tree(boot_files())["/tail.bin"]
    assert isinstance(content, bytes)
    f = fs.open("/tail.bin")
    for off, n in ((0, 10), (4090, 20), (8190, 1810), (9999, 5), (5000, 100000)):
        assert f.read(off, n) == content[off:off + n]
    big = tree(boot_files())["/big.bin"]
    assert isinstance(big, bytes)
    g = fs.open("/big.bin")
    assert g.read(3 * 1024 * 1024 - 7, 200) == big[3 * 1024 * 1024 - 7:3 * 1024 * 1024 + 193]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_symlinks(fmt: str) -> None:
    """:1035-1093: relative targets from the directory holding the link, absolute from the root, a link to a
    directory in the middle of a path; MAX_LINK_COUNT = 5 links per lookup (the 6th is Error 26); a loop is
    Error 26."""
    fs = mounted(img(fmt))
    t = tree(boot_files())
    kernel = next(c for p, c in t.items() if p.startswith("/boot/vmlinuz-"))
    assert read(fs, "/boot/vmlinuz") == kernel
    assert read(fs, "/abs") == t["/small.txt"]
    assert read(fs, "/d1/up") == t["/tail.bin"]
    assert read(fs, "/dirlink/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/deep.txt") == b"at the bottom\n"
    assert read(fs, "/c5") == t["/small.txt"]  # c5 -> c6 -> c7 -> c8 -> c9 -> small.txt: 5 links
    for path in ("/c4", "/loop1"):
        e = grub_error(fs, path)
        assert (e.number, e.code) == (Err.SYMLINK_LOOP, "symlink-loop"), e
    assert isinstance(t["/c9"], Symlink)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_lookup_failures(fmt: str) -> None:
    """Error 15 for a missing name (:1205), Error 2 for a directory as a file or a file as a directory
    (:1100-1104, :1124-1128), Error 15 for an empty last component (a trailing '/': nothing matches '')."""
    fs = mounted(img(fmt))
    for path, number, code in (("/nope", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/many/entry-9999", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/d1", Err.BAD_FILETYPE, "bad-file-type"),
                               ("/small.txt/x", Err.BAD_FILETYPE, "bad-file-type"),
                               ("/d1/", Err.FILE_NOT_FOUND, "file-not-found")):
        e = grub_error(fs, path)
        assert (e.number, e.code) == (number, code), (path, e)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_check_image_boots(fmt: str) -> None:
    """The whole emulator on a partitionless ReiserFS disk: menu.lst, kernel and initrd read through the reader."""
    r = check(img(fmt))
    assert r["outcome"] == "boots", r["findings"]
    assert "fs-unsupported" not in codes(r)
    assert r["kernel"]["path"].startswith("/boot/vmlinuz")


def _journal_image(transactions: list[dict[int, bytes]]) -> bytes:
    """The 3.6 image with valid, unflushed journal transactions after the last flushed one: each maps block
    numbers to the given contents, in block-number order."""
    data = bytearray(img("3.6").read_bytes())
    bs, sb = 4096, 65536
    jblock = int.from_bytes(data[sb + 12:sb + 16], "little")
    jsize = int.from_bytes(data[sb + 20:sb + 24], "little")
    header = (jblock + jsize) * bs
    last_flush = int.from_bytes(data[header:header + 4], "little")
    desc_at = int.from_bytes(data[header + 4:header + 8], "little")
    mount_id = int.from_bytes(data[header + 8:header + 12], "little")

    def put(journal_index: int, block: bytes) -> None:
        off = (jblock + journal_index % jsize) * bs
        data[off:off + bs] = block

    for k, blocks in enumerate(transactions):
        j_len = len(blocks)
        real = sorted(blocks)
        desc = bytearray(bs)
        desc[0:12] = ((last_flush + 1 + k).to_bytes(4, "little") + j_len.to_bytes(4, "little")
                      + mount_id.to_bytes(4, "little"))
        for i, blk in enumerate(real):
            desc[12 + 4 * i:16 + 4 * i] = blk.to_bytes(4, "little")
            put(desc_at + 1 + i, blocks[blk])
        desc[4084:4092] = b"ReIsErLB"
        commit = bytearray(bs)
        commit[0:8] = desc[0:8]
        put(desc_at, bytes(desc))
        put(desc_at + 1 + j_len, bytes(commit))
        desc_at += 2 + j_len
    return bytes(data)


def _small_leaf(data: bytes) -> tuple[int, int]:
    """(leaf block, offset of the direct item's text in it) outside the journal."""
    bs, sb = 4096, 65536
    jblock = int.from_bytes(data[sb + 12:sb + 16], "little")
    jsize = int.from_bytes(data[sb + 20:sb + 24], "little")
    at = data.find(b"small file in a direct item")
    while jblock <= at // bs <= jblock + jsize:  # skip the journal's old copies of the leaf
        at = data.find(b"small file in a direct item", at + 1)
    assert int.from_bytes(data[at // bs * bs:at // bs * bs + 2], "little") == 1  # a leaf
    return at // bs, at % bs


def _patched_leaf(data: bytes, text: bytes) -> tuple[int, bytes]:
    leaf, off = _small_leaf(data)
    copy = bytearray(data[leaf * 4096:(leaf + 1) * 4096])
    copy[off:off + len(text)] = text
    return leaf, bytes(copy)


def test_journal_transactions_are_replayed() -> None:
    """journal_init (:480-572) + block_read (:403-469): a valid transaction after the last flushed one maps its
    blocks to their journal copies, so GRUB reads the journal's version of a leaf."""
    base = img("3.6").read_bytes()
    leaf, copy = _patched_leaf(base, b"SMALL")
    data = _journal_image([{leaf: copy}])
    fs = reiserfs.mount(Volume(MemoryDisk(data), 0, len(data)))
    assert fs is not None and fs.journal_transactions == 1
    assert "reiserfs-journal-replayed" in [f.code for f in fs.findings()]
    assert read(fs, "/small.txt").startswith(b"SMALL file")
    assert read(mounted(img("3.6")), "/small.txt").startswith(b"small file")


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_journal_cache_overflow_reads_descriptors_from_disk(arch: str) -> None:
    """Three transactions of 1000 blocks: the first two fill JOURNAL_START..JOURNAL_END (8 KiB less INFO, 2022
    words on x86_64, 2024 on i386: :526-534), the third gets the end marker and block_read finds its blocks by
    reading its descriptor from disk (:427-453). Later transactions win: the leaf copy in the third is read."""
    base = img("3.6").read_bytes()
    leaf, first = _patched_leaf(base, b"AAAAA")
    _, last = _patched_leaf(base, b"SMALL")
    filler = bytes(4096)

    def txn(k: int, mapped: bytes | None) -> dict[int, bytes]:
        out = {100000 + 1000 * k + i: filler for i in range(1000 if mapped is None else 999)}
        if mapped is not None:
            out[leaf] = mapped
        return out

    data = _journal_image([txn(0, first), txn(1, None), txn(2, last)])
    fs = reiserfs.mount(Volume(MemoryDisk(data), 0, len(data)), arch=arch)
    assert fs is not None and fs.journal_transactions == 3
    run = fs._mounted
    assert run.journal_table[-1] == 0xFFFFFFFF and len(run.journal_table) == 2 * 1001 + 1
    assert read(fs, "/small.txt").startswith(b"SMALL file")


@pytest.mark.parametrize("name", ["reiserfs-3.6", "reiserfs-3.5", "reiserfs-jr"])
def test_empty_filesystems_of_every_format(name: str) -> None:
    """Freshly made 3.6, 3.5 and JR filesystems (test_fs_probe's recipes) mount; the root is a one-leaf tree
    (:665-670 copies it to the leaf slot); a missing file is Error 15, and so is "/" itself: after the slashes
    the name is empty, and substring("", name) is never 0 (:1173, char_io.c:1189)."""
    from tests.test_fs_probe import image as probe_image
    from tests.test_fs_probe import volume

    vol = volume(probe_image(name))
    fs = reiserfs.mount(vol)
    assert fs is not None and fs.tree_depth == 1
    assert fs.identity.fstype == "reiserfs"
    e = grub_error(fs, "/boot/grub/menu.lst")
    assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found")
    e = grub_error(fs, "/")
    assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found")


def test_mount_refusals() -> None:
    """reiserfs_mount (:576-672): a block size above FSYSREISER_MAX_BLOCKSIZE (8 KiB) or s_version > 2 do not
    mount; a root block of level >= 7 does not mount."""
    data = bytearray(img("3.6").read_bytes())
    sb = 65536

    def mount_with(patch: dict[int, bytes]) -> object:
        d = bytearray(data)
        for off, b in patch.items():
            d[off:off + len(b)] = b
        return reiserfs.mount(Volume(MemoryDisk(bytes(d)), 0, len(d)))

    assert mount_with({}) is not None
    assert mount_with({sb + 44: (16384).to_bytes(2, "little")}) is None
    assert mount_with({sb + 72: (3).to_bytes(2, "little")}) is None
    root = int.from_bytes(data[sb + 8:sb + 12], "little")
    assert mount_with({root * 4096: (7).to_bytes(2, "little")}) is None


def test_boot_partition_with_the_hd00_profile() -> None:
    """ReiserFS /boot on (hd0,0) of an MBR disk (reiserfs_mount ignores the partition type; here 0x83) boots with
    the hd00 profile; the volume starts at 1 MiB, so every block number is partition-relative."""
    files = boot_files(MENU.replace(b"root (hd0)", b"root (hd0,0)"))
    image_path = mbr([Part(Fs.of(files, fstype="reiserfs", options=()), size_mb=48)])
    r = check(image_path, "1.05", "hd00")
    assert r["outcome"] == "boots", r["findings"]
    assert r["menu"]["device"] == "(hd0,0)"


def test_holes_read_block_zero_of_the_partition() -> None:
    """/sparse.bin (300 data blocks, a hole after each, written with pwrite): holes are zero pointers in the
    indirect items, and reiserfs_read (:957-975) reads "block 0" for them, i.e. the first 4 KiB of the partition.
    Zeros on a fresh filesystem (mkreiserfs leaves the first 64 KiB alone), anything that was written there
    otherwise (here: a boot loader's bytes)."""
    path = sparse_images()[0]
    fs = mounted(path)
    want = sparse_content()
    assert read(fs, "/sparse.bin") == want
    data = bytearray(path.read_bytes())
    data[0:4096] = b"B" * 4096
    fs2 = reiserfs.mount(Volume(MemoryDisk(bytes(data)), 0, len(data)))
    assert fs2 is not None
    got = read(fs2, "/sparse.bin")
    assert got[4096:8192] == b"B" * 4096 and got[0:4096] == want[0:4096] and got[8192:12288] == want[8192:12288]


def test_long_symlinks() -> None:
    """:1044-1056: the target is read into the 1024-byte linkbuf after the rest of the path, so a 149-byte target
    is followed (it is read through reiserfs_read like a file's body) and a 1029-byte one is Error 14."""
    fs = mounted(img("3.6"))
    assert read(fs, "/link149") == tree(boot_files())["/small.txt"]
    e = grub_error(fs, "/link1029")
    assert (e.number, e.code) == (Err.FILELENGTH, "fs-symlink-too-long"), e
