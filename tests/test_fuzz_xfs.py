"""Fuzz the PV-GRUB XFS emulation and the volume probes: they return or raise GrubError, nothing else, quickly.

The XFS base image is the 16 MiB `fuzz-v4` kind of tests/fixtures_xfs.py (mkfs.xfs -m crc=0 -n ftype=0 from a
protofile): shortform, block, leaf and node directories (extent and btree format), files (one with a bmap
btree), a symlink. Mutations hit what fsys_xfs.c parses -- the superblock fields xfs_mount keeps (:466-481),
inodes (di_read :201, the forks read by init_extents :225 and first_dentry :411), directory data, leaf and
node blocks (next_dentry :333, xfs_dabread :292), bmap btree blocks (:236-279) -- plus anywhere in the image.
Walks are bounded at 200,000 GRUB steps (XfsFilesystem.step_limit; the default is 500,000) to keep every
example well under the 2 s deadline. The probes (probe.identify, probe.grub_mount_sequence) get random bytes
around the magics they look for. A hang shows up as a deadline failure (2 s), any other exception as a bug.
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvbuild.pvgrub.blockio import MemoryDisk, Volume
from pvbuild.pvgrub.errors import GrubError
from pvbuild.pvgrub.fs import probe, xfs
from tests.fixtures_xfs import Geometry, XfsImage, bmap, build_xfs_image, inode_number
from tests.fuzzdisks import PatchedDisk

PATHS = ("/boot/grub/menu.lst", "/boot/vmlinuz", "/boot/link", "/boot/btree", "/sf/a", "/sf/b", "/block/entry-07",
         "/leaf/leaf-entry-0149", "/node/a-long-name-for-a-node-directory-0699",
         "/bnode/a-long-name-for-a-btree-format-node-directory-1499", "/nope", "/boot/",
         "/sf/../boot/grub/menu.lst", "/block/../boot/link")
READ_WINDOW = 64 * 1024
FUZZ = settings(deadline=2000, max_examples=120, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@cache
def _image() -> tuple[bytes, tuple[tuple[str, int, int], ...]]:
    """The image bytes and the (name, offset, length) regions worth mutating, located with xfs_db."""
    img = build_xfs_image("fuzz-v4")
    data = img.fs_path.read_bytes()
    geo = Geometry.read(img.fs_path)
    regions: list[tuple[str, int, int]] = [("superblock", 0, 512), ("xfs_sb_t as GRUB reads it", 0, 200)]
    rootino = int.from_bytes(data[56:64], "big")
    regions.append(("inode /", geo.ino_offset(rootino), geo.isize))
    for path in ("/boot", "/boot/grub", "/boot/grub/menu.lst", "/boot/vmlinuz", "/boot/link", "/boot/btree",
                 "/sf", "/block", "/leaf", "/node", "/bnode"):
        regions.append((f"inode {path}", geo.ino_offset(inode_number(img.fs_path, path)), geo.isize))
    for path in ("/block", "/leaf", "/node", "/bnode"):
        for off, start, count, _ in bmap(img.fs_path, path)[:3] + bmap(img.fs_path, path)[-2:]:
            regions.append((f"dir block {path}@{off}", geo.fsb_offset(start), min(count, 2) * geo.bsize))
    for path in ("/boot/btree", "/bnode"):  # the bmap btree leaf the inode root points to
        ino = inode_number(img.fs_path, path)
        root = data[geo.ino_offset(ino) + 100:geo.ino_offset(ino) + geo.isize]
        maxrecs = (geo.isize - 100 - 4) // 16
        leaf = int.from_bytes(root[4 + maxrecs * 8:12 + maxrecs * 8], "big")
        regions.append((f"btree block {path}", geo.fsb_offset(leaf), 24 + 16 * 40))
    regions.append(("anywhere", 0, len(data)))
    return data, tuple(regions)


def _exercise(disk: MemoryDisk) -> None:
    vol = Volume(disk, 0, disk.size)
    xfs.identify(vol)
    xfs.refusal_reason(vol)
    fs = xfs.mount(vol)
    if fs is None:
        return
    fs.step_limit = 200_000
    for path in PATHS:
        try:
            f = fs.open(path)
            f.read(0, READ_WINDOW)
            f.read(max(0, f.size - 100), 200)
        except GrubError:
            pass


@st.composite
def mutations(draw: st.DrawFn, which: str | None) -> list[tuple[int, bytes]]:
    regions = _image()[1]
    pool = [r for r in regions if which is None or r[0].startswith(which)]
    out = []
    for _ in range(draw(st.integers(1, 6))):
        _, base, length = draw(st.sampled_from(pool))
        off = base + draw(st.integers(0, max(0, length - 1)))
        out.append((off, draw(st.binary(min_size=1, max_size=8))))
    return out


def _apply(muts: list[tuple[int, bytes]]) -> MemoryDisk:
    return PatchedDisk(_image()[0], muts)


def test_unmutated_image_reads() -> None:
    """The base image works, so the fuzz cases start from a meaningful state."""
    data, _ = _image()
    fs = xfs.mount(Volume(MemoryDisk(data), 0, len(data)))
    assert fs is not None
    img = build_xfs_image("fuzz-v4")
    for path in ("/node/a-long-name-for-a-node-directory-0699",
                 "/bnode/a-long-name-for-a-btree-format-node-directory-1499", "/boot/btree"):
        f = fs.open(path)
        assert f.read(0, f.size) == img.files[path], path
    assert data[geo_format_offset(img, "/bnode")] == 3 and data[geo_format_offset(img, "/boot/btree")] == 3


def geo_format_offset(img: XfsImage, path: str) -> int:
    geo = Geometry.read(img.fs_path)
    return geo.ino_offset(inode_number(img.fs_path, path)) + 5


@FUZZ
@given(mutations("superblock"))
def test_fuzz_superblock(muts: list[tuple[int, bytes]]) -> None:
    """fsys_xfs.c:455-484: any superblock mount() accepts is walked without crashing or hanging."""
    _exercise(_apply(muts))


@FUZZ
@given(mutations("xfs_sb_t"))
def test_fuzz_grub_superblock_fields(muts: list[tuple[int, bytes]]) -> None:
    """fsys_xfs.c:466-481: blocksize, blocklog, rootino, inodesize, agblocks, dirblklog, inopblog, agblklog."""
    _exercise(_apply(muts))


@FUZZ
@given(mutations("inode"))
def test_fuzz_inodes(muts: list[tuple[int, bytes]]) -> None:
    """fsys_xfs.c:201-287, 411-419: di_format, di_size, di_mode, di_nextents, di_forkoff, the forks."""
    _exercise(_apply(muts))


@FUZZ
@given(mutations("dir block"))
def test_fuzz_directory_blocks(muts: list[tuple[int, bytes]]) -> None:
    """fsys_xfs.c:333-452: data entries, free tags, block tail, leaf header, node btree[0].before, forw."""
    _exercise(_apply(muts))


@FUZZ
@given(mutations("btree block"))
def test_fuzz_bmap_btree_blocks(muts: list[tuple[int, bytes]]) -> None:
    """fsys_xfs.c:236-279: bmap btree block header (level, numrecs, right sibling) and records."""
    _exercise(_apply(muts))


@FUZZ
@given(mutations(None))
def test_fuzz_anywhere(muts: list[tuple[int, bytes]]) -> None:
    """Any byte of the image."""
    _exercise(_apply(muts))


MAGICS = ((0, b"XFSB\0\0\x10\0"), (0x36, b"FAT16   "), (0x52, b"FAT32   "), (0x1FE, b"\x55\xaa"), (0, b"\xeb\x3c\x90"),
          (1024 + 56, b"\x53\xef"), (1024 + 16, b"\x7f\x13"), (1024 + 24, b"\x5a\x4d"), (65536 + 52, b"ReIsEr2Fs"),
          (8192 + 52, b"ReIsErFs"), (32768, b"JFS1"), (32769, b"CD001"), (0, b"LUKS\xba\xbe\0\x02"),
          (512, b"LABELONE"), (536, b"LVM2 001"), (4096 - 10, b"SWAPSPACE2"), (0, b"hsqs"),
          (65536 + 64, b"_BHRfS_M"), (0, b"\xfcN+\xa9\x01\0\0\0"), (4096, b"\xfcN+\xa9\x01\0\0\0"),
          (0, b"\xce\xfa\xad\xde"), (65536 + 1372, b"\x19\x01\x54\x19"), (8192 + 1372, b"\x54\x19\x01\0"))


@settings(deadline=2000, max_examples=250, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.sampled_from([0, 200, 512, 4096, 65536, 70000, 128 * 1024, 2 << 20]),
       seeds=st.lists(st.tuples(st.sampled_from(MAGICS), st.binary(min_size=0, max_size=64),
                                st.integers(0, 255)), max_size=4),
       noise=st.binary(min_size=0, max_size=512), part_type=st.sampled_from([None, 0x83, 0x06, 0x9E, 0x81]))
def test_fuzz_probe(size: int, seeds: list[tuple[tuple[int, bytes], bytes, int]], noise: bytes,
                    part_type: int | None) -> None:
    """probe.identify / grub_mount_sequence / fsys_buf_after_probe on random bytes seeded with the magics
    (libblkid's and GRUB's): bounded reads, no exception at all."""
    data = bytearray(size)
    data[:len(noise)] = noise[:size]
    for (off, magic), tail, delta in seeds:
        blob = magic + tail
        at = off + (delta if delta < 16 else 0)
        if at + len(blob) <= size:
            data[at:at + len(blob)] = blob
    disk = MemoryDisk(bytes(data))
    vol = Volume(disk, 0, size - size % 512, part_type, "(hd0)" if part_type is None else "(hd0,0)")
    probe.identify(vol)
    probe.grub_mount_sequence(vol)
    probe.grub_recognises(vol, arch="i386")
    probe.fsys_buf_after_probe(vol, "xfs")
    assert disk.bytes_read <= 64 * size + (8 << 20)
