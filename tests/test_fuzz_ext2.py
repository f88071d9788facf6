"""Fuzz the PV-GRUB ext2 emulation with mutated real images: mount/open/read return or raise GrubError.

The images are the 2 MiB `fuzz-ext2` and `fuzz-ext4` kinds of tests/fixtures_ext.py (made by mkfs -d). Mutations
hit the structures GRUB's fsys_ext2fs.c parses -- superblock (:56-143), group descriptors (:828-841), inodes
(:848-882), extent headers and index blocks (:594-663), indirect blocks (:447-547), directory blocks
(:1004-1091) -- plus anywhere in the image. A hang shows up as a deadline failure, any other exception as a bug.
"""

from __future__ import annotations

import re
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvbuild.pvgrub.blockio import MemoryDisk, Volume
from pvbuild.pvgrub.errors import GrubError
from pvbuild.pvgrub.fs.ext2 import identify, mount
from tests.fixtures_ext import ExtImage, build_ext_image, debugfs

PATHS = ("/boot/grub/menu.lst", "/boot/vmlinuz", "/boot/sparse", "/boot/fast", "/boot/slow",
         "/boot/dir/entry-with-a-longish-name-39", "/nope", "/boot/grub/", "/boot/fast/x")
READ_WINDOW = 64 * 1024
BS = 1024  # both fuzz images use 1 KiB blocks


@cache
def _image(kind: str) -> tuple[bytes, tuple[tuple[str, int, int], ...]]:
    """The image bytes and the (name, offset, length) regions worth mutating, located with debugfs."""
    img: ExtImage = build_ext_image(kind)
    data = img.path.read_bytes()
    regions: list[tuple[str, int, int]] = [("superblock", 1024, 1024), ("superblock fields GRUB reads", 1024, 0x108),
                                           ("group-descriptors", 2 * BS, 64), ("anywhere", 0, len(data))]
    inode_size = int.from_bytes(data[1024 + 0x58:1024 + 0x5A], "little")
    for path in ("/", "/boot", "/boot/grub", "/boot/grub/menu.lst", "/boot/vmlinuz", "/boot/sparse",
                 "/boot/fast", "/boot/slow", "/boot/dir"):
        m = re.search(r"located at block (\d+), offset 0x([0-9a-f]+)", debugfs(img, f"imap {path}"))
        assert m, path
        regions.append((f"inode {path}", int(m.group(1)) * BS + int(m.group(2), 16), inode_size))
    for path in ("/", "/boot", "/boot/grub", "/boot/dir"):
        for blk in debugfs(img, f"blocks {path}").split()[:2]:
            regions.append((f"dir block {path}", int(blk) * BS, BS))
    ex = debugfs(img, "ex /boot/sparse")
    index = re.search(r"^\s*0/\s*1\s+1/\s*1\s+\d+\s*-\s*\d+\s+(\d+)\s", ex, re.M)
    if index:
        regions.append(("extent leaf block", int(index.group(1)) * BS, 12 + 12 * 9))
    ind = re.search(r"\(IND\):(\d+)", debugfs(img, "stat /boot/vmlinuz"))
    if ind:
        regions.append(("indirect block", int(ind.group(1)) * BS, BS))
    return data, tuple(regions)


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    data, regions = _image(kind)
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        _name, start, length = draw(st.sampled_from(regions))
        off = start + draw(st.integers(0, length - 1))
        if draw(st.booleans()):
            patch = draw(st.binary(min_size=1, max_size=8))
            buf[off:off + len(patch)] = patch[:len(buf) - off]
        else:
            buf[off] ^= draw(st.integers(1, 255))
    return bytes(buf)


def _exercise(data: bytes) -> None:
    vol = Volume(MemoryDisk(data), 0, len(data))
    identify(vol)
    fs = mount(vol)
    if fs is None:
        return
    fs.findings()
    for path in PATHS:
        try:
            f = fs.open(path)
            f.read(0, READ_WINDOW)
            f.read(max(0, f.size - READ_WINDOW), READ_WINDOW)
        except GrubError:
            pass


FUZZ = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated("fuzz-ext2"))
def test_fuzz_ext2_block_maps(data: bytes) -> None:
    """PVGRUB.md §5 (ext2 reader robustness): Mutated ext2 (block maps, fsys_ext2fs.c:447-547): only GrubError, never
    another exception or a hang."""
    _exercise(data)


@FUZZ
@given(mutated("fuzz-ext4"))
def test_fuzz_ext4_extents(data: bytes) -> None:
    """PVGRUB.md §5 (ext4 reader robustness): Mutated ext4 (extent trees, fsys_ext2fs.c:594-663): only GrubError, never
    another exception or a hang."""
    _exercise(data)


def test_fuzz_images_are_sane() -> None:
    """PVGRUB.md §4-5: the unmutated fuzz images resolve the paths the fuzzer exercises (mutations are what fails)."""
    for kind in ("fuzz-ext2", "fuzz-ext4"):
        data, regions = _image(kind)
        assert any(name == "extent leaf block" for name, _, _ in regions) == (kind == "fuzz-ext4")
        assert any(name == "indirect block" for name, _, _ in regions) == (kind == "fuzz-ext2")
        fs = mount(Volume(MemoryDisk(data), 0, len(data)))
        assert fs is not None
        assert fs.open("/boot/slow").read(0, 100) == b"slow target\n"
        assert fs.open("/boot/fast").read(0, 9) == b"default 0"
        assert fs.open("/boot/dir/entry-with-a-longish-name-39").read(0, 100) == b"entry 39\n"
